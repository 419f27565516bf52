// Token-only gold descriptions (see the header).
#include "token_descriptions.hpp"

#include <vector>

#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::test {

void write_token_descriptions(const std::string& store_path, const std::string& tokenizer_dir,
                              const std::string& name) {
  std::vector<std::string> descriptions;
  {
    store::ActivationStore acts(store_path);
    auto tokenizer = tokenizer::Tokenizer::from_file(tokenizer_dir);
    for (int64_t row = 0; row < acts.n_samples(); ++row) {
      std::string token = tokenizer.decode({static_cast<tokenizer::TokenId>(acts.sample_token(row))});
      std::string clean;
      for (char c : token) clean += c == '\n' ? std::string("\\n") : std::string(1, c);
      descriptions.push_back("<explanation>\n'" + clean + "'\n</explanation>");
    }
  }  // the store is closed before it is written
  store::ActivationStore::write_descriptions(store_path, name, descriptions);
}

}  // namespace nla::test
