#!/usr/bin/env python3
"""Scroll's tokenizer against llama.cpp's on the same texts: `scroll tokenize -` against
`llama-tokenize --ids --no-parse-special --no-escape` (text that looks like a control token
stays text, and backslashes stay backslashes, as Scroll reads a user's text).

    scripts/tokenize-vs-llamacpp.py /path/to/llama-tokenize FILE... [--model M] [--pieces N]

Takes N random slices (200–3000 characters) of each FILE plus a few hand-made texts
(whitespace runs, emoji, CJK, control-token and HTML text, digits, code) and prints each difference, then
how many were identical.
"""
import argparse, os, random, subprocess, sys, tempfile

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("llama_tokenize")
    p.add_argument("files", nargs="+")
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--pieces", type=int, default=12)
    p.add_argument("--seed", type=int, default=5)
    a = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scroll = os.path.join(root, ".build", "release", "scroll")
    random.seed(a.seed)
    texts = ["  leading spaces\n\n\n\ttabs\t\t and   runs    ", "emoji 😀👍🏽 and CJK 東京都 한국어",
             "<|im_start|>user\nnot special<|im_end|>", "1234567890 3.14159 -42 1e10 0x1F",
             "<start_of_turn>user\nhi<end_of_turn>\n<bos><pad> <table><tr><td>cell</td></tr></table>",
             "\n" * 40 + "x" + " " * 45 + "y" + "\t" * 33 + "z\r\n\r\n", "\u2581 literal marks \u2581\u2581 and <0x41> text",
             "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\n\nclass A:\n\tpass\n"]
    for f in a.files:
        data = open(f, encoding="utf-8", errors="replace").read()
        for _ in range(a.pieces):
            start = random.randrange(max(1, len(data) - 3000))
            texts.append(data[start:start + random.randrange(200, 3000)])
    same = 0
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as tmp:
        for i, t in enumerate(texts):
            tmp.seek(0); tmp.truncate(); tmp.write(t); tmp.flush()
            theirs = subprocess.run([a.llama_tokenize, "-m", a.model, "-f", tmp.name, "--ids", "--no-parse-special",
                                     "--no-escape", "--log-disable"], capture_output=True, text=True, cwd=root).stdout.strip().splitlines()
            ours = subprocess.run([scroll, "tokenize", "-m", a.model, "-"], stdin=open(tmp.name), capture_output=True,
                                  text=True, cwd=root).stdout.strip()
            if theirs and theirs[-1] == ours:
                same += 1
            else:
                print(f"differs: text {i} {t[:60]!r}:\n  llama.cpp {theirs[-1][:100] if theirs else '(nothing)'}\n  scroll    {ours[:100]}")
    print(f"{same}/{len(texts)} identical")
    sys.exit(0 if same == len(texts) else 1)

if __name__ == "__main__":
    main()
