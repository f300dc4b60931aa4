#!/usr/bin/env python3
"""How often replies loop: each prompt of a fixed set asked with several seeds through
`scroll` (one-shot, real model), a reply counted as looping when a run of 8 words occurs
three times or more in it.

    scripts/loop-rate.py [--seeds N] [--max-tokens N] [-- SCROLL FLAGS...]

e.g. `scripts/loop-rate.py --seeds 6 -- --repeat-penalty 1.1`. Prints each looping reply's
prompt and seed, then the rate.
"""
import argparse, os, subprocess, sys

PROMPTS = [
    "Write a short poem about the sea.",
    "Tell me a story about a dragon who is afraid of fire.",
    "Explain how a refrigerator works.",
    "List ten things to pack for a camping trip.",
    "Write a recipe for a simple tomato soup.",
    "Write a Python function that reverses a string, and explain it.",
    "Write a polite email asking my landlord to fix the heating.",
    "What are the main causes of the French Revolution?",
    "Describe a walk through a forest in autumn.",
    "Give me advice for my first day at a new job.",
    "Write a song about a train crossing the desert.",
    "Why is the sky blue? Explain it to a child.",
]

def loops(text, n=8, times=3):
    words = text.split()
    counts = {}
    for i in range(len(words) - n + 1):
        key = tuple(w.lower().strip('.,;:!?"\'') for w in words[i:i + n])
        counts[key] = counts.get(key, 0) + 1
        if counts[key] >= times:
            return True
    return False

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("flags", nargs="*")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scroll = os.path.join(root, ".build", "release", "scroll")
    looped = total = 0
    for prompt in PROMPTS:
        for seed in range(1, args.seeds + 1):
            out = subprocess.run([scroll, "--seed", str(seed), "-n", str(args.max_tokens), *args.flags, prompt],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=root)
            if out.returncode != 0:
                sys.exit(f"scroll failed: {out.stderr.strip()}")
            total += 1
            if loops(out.stdout):
                looped += 1
                print(f"loops: seed {seed}: {prompt}")
    print(f"{looped}/{total} replies loop ({100 * looped / total:.0f}%), flags: {' '.join(args.flags) or '(defaults)'}")

if __name__ == "__main__":
    main()
