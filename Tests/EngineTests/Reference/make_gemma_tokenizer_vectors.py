"""Tokenizer test vectors for a SentencePiece vocabulary: Gemma 3's ids from llama.cpp's own
tokenizer (`llama-tokenize --ids --no-parse-special --no-escape`, llama.cpp 0c1e570 as
vendored in the llama-cpp-python 0.3.36 sdist, built outside the repo), for
Tests/EngineTests/TokenizerTests.swift.

Run from the repo root (scripts/setup.sh fetches the model):
    python3 Tests/EngineTests/Reference/make_gemma_tokenizer_vectors.py /path/to/llama-tokenize
Writes gemma3_tokenizer_vectors.json, and spm_space_prefix_tokenizer_vectors.json for the same
vocabulary with add_space_prefix = true (see space_prefix_vocabulary): each a list of
{"name", "text_b64", "ids", "decoded_b64"}
in the format of tokenizer_vectors.json (ids without the BOS that llama-tokenize puts
first; decoded = the text itself, which byte fallback gives back, except that a "▁" typed
in the text comes back as a space, as llama.cpp detokenizes it: SentencePiece's one loss). The texts: the
corpus of make_tokenizer_vectors.py, texts aimed at what SentencePiece and Gemma's
user-defined tokens do differently (whitespace runs, newlines, HTML tags, the "▁" mark,
byte-token spellings), and slices of the licence texts every Debian system ships.
"""
import base64
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import types

HERE = pathlib.Path(__file__).parent
OUT = HERE / "gemma3_tokenizer_vectors.json"
MODEL = "models/gemma-3-270m-q4_k_m.gguf"

# make_tokenizer_vectors.py's corpus, without the Hugging Face tokenizer it also loads.
sys.modules["hf_tokenizer"] = types.SimpleNamespace(load_hf_tokenizer=None)
sys.path.insert(0, str(HERE))
from make_tokenizer_vectors import BYTE_CASES, TEXT_CASES  # noqa: E402

GEMMA_CASES = {
    "gemma_turn_markers": "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "gemma_control_text": "<bos><eos><pad><unk><mask>[multimodal]<unused0> <start_of_image>",
    "html_tags": "<table><tr><th>a</th><td>cell</td></tr></table> <h1>Title</h1><em>x</em></strong>",
    "newline_runs": "a\nb\n\nc\n\n\nd" + "\n" * 40 + "e",
    "space_runs": "x  y   z" + " " * 45 + "w" + " " * 31 + "v",
    "tab_runs": "\tone\t\ttwo" + "\t" * 33 + "three",
    "mixed_whitespace": " \t \n \r\n\t\t  \n\n  end ",
    "sentencepiece_mark": "\u2581 literal \u2581\u2581marks\u2581 and <0x41> <0x0A> spellings",
    "leading_space": " starts with a space",
    "code": "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\n\nclass A:\n\tpass\n",
    "rare_scripts": "ᚠᚢᚦᚨᚱᚲ 𓀀𓁐 ꧁꧂ 🜁🜂 \U0001F9EC\U0001FAE0 ﷽",
}


def license_slices(n=8, seed=7):
    files = sorted(pathlib.Path("/usr/share/common-licenses").glob("*"))
    files = [f for f in files if f.is_file()]
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        f = files[i % len(files)]
        data = f.read_text(encoding="utf-8", errors="replace")
        start = rng.randrange(max(1, len(data) - 2500))
        out[f"license_{f.name}_{i}"] = data[start:start + rng.randrange(300, 2500)]
    return out


def space_prefix_vocabulary(path):
    """A vocabulary-only GGUF with Gemma's tokens and scores but `add_space_prefix = true`, as
    Llama 2 and Mistral files have (a leading "▁" before the text and after each user-defined
    token): the SentencePiece path those models take, which no model here has."""
    import gguf
    r = gguf.GGUFReader(MODEL)
    f = r.fields
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1); w.add_context_length(128); w.add_embedding_length(64)
    w.add_feed_forward_length(128); w.add_head_count(1); w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data])
    w.add_token_scores([float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data])
    w.add_token_types([int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data])
    w.add_bos_token_id(2); w.add_eos_token_id(1); w.add_add_bos_token(True); w.add_add_space_prefix(True)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def vectors(llama_tokenize, model, items, out, decoded=True):
    cases = []
    with tempfile.NamedTemporaryFile("wb", suffix=".txt") as tmp:
        for name, raw in items:
            text = raw.decode("utf-8", errors="replace")
            tmp.seek(0); tmp.truncate(); tmp.write(text.encode("utf-8")); tmp.flush()
            run = subprocess.run([llama_tokenize, "-m", model, "-f", tmp.name, "--ids", "--no-parse-special",
                                  "--no-escape", "--log-disable"], capture_output=True, text=True, check=True)
            ids = json.loads(run.stdout.strip().splitlines()[-1])
            assert ids[:1] == [2], f"{name}: expected the BOS first, got {ids[:3]}"
            cases.append({"name": name, "text_b64": base64.b64encode(raw).decode(), "ids": ids[1:]})
            if decoded:
                cases[-1]["decoded_b64"] = base64.b64encode(text.replace("\u2581", " ").encode("utf-8")).decode()
    out.write_text(json.dumps(cases))
    print(f"wrote {out}: {len(cases)} cases, {out.stat().st_size} bytes")


def main():
    llama_tokenize = sys.argv[1]
    items = [(k, v.encode("utf-8")) for k, v in {**TEXT_CASES, **GEMMA_CASES, **license_slices()}.items()]
    items += list(BYTE_CASES.items())
    vectors(llama_tokenize, MODEL, items, OUT)
    with tempfile.TemporaryDirectory() as d:
        path = d + "/space-prefix.gguf"
        space_prefix_vocabulary(path)
        # No round trip there: each fragment gains a leading space, after every "\n" too.
        vectors(llama_tokenize, path, items, OUT.with_name("spm_space_prefix_tokenizer_vectors.json"), decoded=False)


if __name__ == "__main__":
    main()
