"""Reference values for Gemma 3 270M (base, Q4_K_M) from llama.cpp 0c1e570 (the llama-cpp-python
0.3.36 sdist's vendored copy, built outside the repo with GGML_NATIVE; on AMX hosts add
--no-repack, its AMX path crashes), for Tests/EngineTests/GemmaTests.swift.

Run from the repo root (scripts/setup.sh fetches the model):
    python3 Tests/EngineTests/Reference/make_gemma_reference.py /path/to/llama.cpp/build/bin
Writes gemma3_reference.json:
  "greedy": [{"prompt", "continuation"}]: llama-simple's greedy text after each prompt (24 tokens);
  "perplexity": llama-perplexity -c 512 --chunks 2 over the start of /usr/share/common-licenses/GPL-3
  (the text every Debian system ships), with the byte count used.
"""
import json
import pathlib
import re
import subprocess
import sys

MODEL = "models/gemma-3-270m-q4_k_m.gguf"
OUT = pathlib.Path(__file__).with_name("gemma3_reference.json")
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at a temperature of",
           "Once upon a time, in a small village by the sea,"]
TEXT, TEXT_BYTES = "/usr/share/common-licenses/GPL-3", 12000


def main():
    bin_dir = pathlib.Path(sys.argv[1])
    greedy = []
    for prompt in PROMPTS:
        out = subprocess.run([str(bin_dir / "llama-simple"), "-m", MODEL, "-n", "24", prompt],
                             capture_output=True, text=True, check=True).stdout
        head = "<bos>" + prompt
        assert out.startswith(head), out[:80]
        greedy.append({"prompt": prompt, "continuation": out[len(head):].rstrip("\n")})
    text = pathlib.Path(TEXT).read_bytes()[:TEXT_BYTES]
    tmp = pathlib.Path("/tmp/gemma-reference-text.txt")
    tmp.write_bytes(text)
    run = subprocess.run([str(bin_dir / "llama-perplexity"), "-m", MODEL, "-f", str(tmp), "-c", "512", "--chunks", "2",
                          "-t", "2"], capture_output=True, text=True, check=True)
    ppl = float(re.search(r"Final estimate: PPL = ([0-9.]+)", run.stdout + run.stderr).group(1))
    OUT.write_text(json.dumps({"greedy": greedy, "perplexity": {"file": TEXT, "bytes": TEXT_BYTES, "chunk": 512,
                                                                 "chunks": 2, "ppl": ppl}}, indent=1, ensure_ascii=False))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
