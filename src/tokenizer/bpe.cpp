// BPE merging on ids, and the per-thread word cache.
#include "bpe.hpp"

#include <cstring>
#include <memory>
#include <queue>
#include <string>

#include "nla/core/error.hpp"

namespace nla::tokenizer::detail {

namespace {

// Words longer than this are not cached (tokenizers uses 256 characters too): they are
// rare, and would crowd out the short ones.
constexpr size_t k_max_cached_bytes = 256;
// Above this many symbols the heap algorithm replaces the quadratic scan.
constexpr size_t k_short_word = 48;

uint64_t hash_bytes(std::string_view bytes) {
  uint64_t h = 0x243F6A8885A308D3ull ^ (bytes.size() * 0x9E3779B97F4A7C15ull);
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t chunk;
    std::memcpy(&chunk, bytes.data() + i, 8);
    h = (h ^ chunk) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  if (i < bytes.size()) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, bytes.data() + i, bytes.size() - i);
    h = (h ^ chunk) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
  }
  return h * 0x9E3779B97F4A7C15ull;
}

// Word -> ids, open addressing over arenas: no allocation per entry. Cleared when full so
// that a change of text mix is followed.
class WordCache {
 public:
  WordCache() : slots_(k_capacity) {}

  bool find(std::string_view word, uint64_t hash, std::vector<TokenId>& out) const {
    for (size_t slot = hash & (k_capacity - 1);; slot = (slot + 1) & (k_capacity - 1)) {
      const Slot& s = slots_[slot];
      if (s.value_length == 0) return false;
      if (s.hash == hash && s.key_length == word.size() &&
          std::memcmp(keys_.data() + s.key_offset, word.data(), word.size()) == 0) {
        out.insert(out.end(), values_.begin() + s.value_offset, values_.begin() + s.value_offset + s.value_length);
        return true;
      }
    }
  }

  void insert(std::string_view word, uint64_t hash, const TokenId* ids, size_t count) {
    if (count == 0 || count > 0xFFFF) return;
    if (used_ >= k_capacity / 2) clear();
    size_t slot = hash & (k_capacity - 1);
    while (slots_[slot].value_length != 0) slot = (slot + 1) & (k_capacity - 1);
    slots_[slot] = {hash, uint32_t(keys_.size()), uint32_t(values_.size()), uint16_t(word.size()), uint16_t(count)};
    keys_.append(word);
    values_.insert(values_.end(), ids, ids + count);
    ++used_;
  }

 private:
  static constexpr size_t k_capacity = size_t(1) << 16;
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0;
    uint32_t value_offset = 0;
    uint16_t key_length = 0;
    uint16_t value_length = 0;  // 0: empty slot
  };
  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    values_.clear();
    used_ = 0;
  }
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<TokenId> values_;
  size_t used_ = 0;
};

// Per thread: a few caches (one per tokenizer in use) and scratch buffers, so that encode
// is lock-free and allocation-free in the steady state.
struct ThreadState {
  struct Owned {
    uint64_t owner = 0;
    std::unique_ptr<WordCache> cache;
  };
  std::array<Owned, 4> caches;
  size_t next_victim = 0;
  std::vector<TokenId> symbols;

  WordCache& cache_for(uint64_t owner) {
    for (auto& c : caches)
      if (c.owner == owner) return *c.cache;
    Owned& victim = caches[next_victim];
    next_victim = (next_victim + 1) % caches.size();
    victim.owner = owner;
    victim.cache = std::make_unique<WordCache>();
    return *victim.cache;
  }
};

ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

}  // namespace

Bpe::Bpe(std::array<TokenId, 256> byte_ids, const std::vector<Merge>& merges) : byte_ids_(byte_ids) {
  size_t capacity = 1024;
  int bits = 10;
  while (capacity < merges.size() * 2) {
    capacity *= 2;
    ++bits;
  }
  table_.assign(capacity, Entry{});
  mask_ = capacity - 1;
  shift_ = 64 - bits;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    uint64_t key = pair_key(m.left, m.right);
    size_t slot = hash_slot(key);
    while (table_[slot].key != k_empty && table_[slot].key != key) slot = (slot + 1) & mask_;
    // A pair listed twice keeps its last rank, as tokenizers' HashMap collect does.
    table_[slot] = {key, uint32_t(rank), m.result};
  }
}

void Bpe::merge_short(std::vector<TokenId>& symbols) const {
  size_t n = symbols.size();
  // ranks[k], results[k]: the pair (k, k+1).
  uint32_t ranks[k_short_word];
  TokenId results[k_short_word];
  TokenId* ids = symbols.data();
  for (size_t k = 0; k + 1 < n; ++k) {
    PairRank p = find(ids[k], ids[k + 1]);
    ranks[k] = p.rank;
    results[k] = p.result;
  }
  while (n > 1) {
    size_t best = 0;
    uint32_t best_rank = ranks[0];
    for (size_t k = 1; k + 1 < n; ++k)
      if (ranks[k] < best_rank) {
        best_rank = ranks[k];
        best = k;
      }
    if (best_rank == UINT32_MAX) break;
    ids[best] = results[best];
    // Drop symbol best+1 and pair `best`; the pairs after shift left by one.
    std::memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof(TokenId));
    std::memmove(ranks + best, ranks + best + 1, (n - best - 2) * sizeof(uint32_t));
    std::memmove(results + best, results + best + 1, (n - best - 2) * sizeof(TokenId));
    --n;
    if (best > 0) {
      PairRank p = find(ids[best - 1], ids[best]);
      ranks[best - 1] = p.rank;
      results[best - 1] = p.result;
    }
    if (best + 1 < n) {
      PairRank p = find(ids[best], ids[best + 1]);
      ranks[best] = p.rank;
      results[best] = p.result;
    }
  }
  symbols.resize(n);
}

void Bpe::merge_long(std::vector<TokenId>& symbols) const {
  // tokenizers' algorithm: a min-heap of candidate merges (rank, position) over a linked
  // list of symbols; entries made stale by an earlier merge are skipped when popped.
  struct Candidate {
    uint32_t rank;
    uint32_t pos;
    TokenId result;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const size_t n = symbols.size();
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  for (size_t k = 0; k < n; ++k) {
    prev[k] = int32_t(k) - 1;
    next[k] = k + 1 < n ? int32_t(k + 1) : -1;
    if (k + 1 < n) {
      PairRank p = find(symbols[k], symbols[k + 1]);
      if (p.rank != UINT32_MAX) queue.push({p.rank, uint32_t(k), p.result});
    }
  }
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    int32_t right = next[top.pos];
    PairRank p = find(symbols[top.pos], symbols[right]);
    if (p.rank != top.rank || p.result != top.result) continue;  // stale
    symbols[top.pos] = top.result;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = int32_t(top.pos);
    if (prev[top.pos] >= 0) {
      PairRank q = find(symbols[prev[top.pos]], symbols[top.pos]);
      if (q.rank != UINT32_MAX) queue.push({q.rank, uint32_t(prev[top.pos]), q.result});
    }
    if (next[top.pos] >= 0) {
      PairRank q = find(symbols[top.pos], symbols[next[top.pos]]);
      if (q.rank != UINT32_MAX) queue.push({q.rank, top.pos, q.result});
    }
  }
  size_t out = 0;
  for (size_t k = 0; k < n; ++k)
    if (alive[k]) symbols[out++] = symbols[k];
  symbols.resize(out);
}

void Bpe::merge(std::vector<TokenId>& symbols, bool use_heap) const {
  if (use_heap || symbols.size() > k_short_word) merge_long(symbols);
  else merge_short(symbols);
}

void Bpe::encode_word(std::string_view word, std::vector<TokenId>& out, uint64_t cache_owner) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  ThreadState& state = thread_state();
  const bool cacheable = word.size() <= k_max_cached_bytes;
  uint64_t hash = 0;
  WordCache* cache = nullptr;
  if (cacheable) {
    cache = &state.cache_for(cache_owner);
    hash = hash_bytes(word);
    if (cache->find(word, hash, out)) return;
  }
  std::vector<TokenId>& symbols = state.symbols;
  symbols.resize(word.size());
  for (size_t i = 0; i < word.size(); ++i) symbols[i] = byte_ids_[static_cast<unsigned char>(word[i])];
  merge(symbols, false);
  if (cache) cache->insert(word, hash, symbols.data(), symbols.size());
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace nla::tokenizer::detail
