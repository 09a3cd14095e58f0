#!/usr/bin/env python3
"""gen_corpus.py — the demo pipeline's license-clean corpus, made from nothing.

Writes JSONL documents ({"text": ...}) to stdout for one of three stages:

  general    short stories, descriptions and dialogues over a small world
             (people, animals, places, objects) with consistent facts, so a
             model can learn grammar, agreement and simple co-reference;
  reasoning  worked arithmetic and list problems with step-by-step solutions
             in <think>…</think>, and small Python functions with doctests;
  long       long documents: a story whose facts are stated early and asked
             about at the end, for long-context training;
  chat       conversations for supervised fine-tuning ({"messages": ...}):
             the reasoning stage's arithmetic and list problems as a user
             question and an assistant answer that thinks first
             (<think>…</think>, then "Answer: N");
  cot        the post-training task as conversations for the cold-start
             SFT: addition and subtraction of whole numbers, bare ("What is
             37 + 48?") or as a word problem, answered with a column-by-
             column trace in <think>…</think>, then "The answer is \\boxed{85}.";
  problems   the same task as prompts for GRPO and evaluation: {"messages":
             [the user turn], "answer": "85"}, the gold answer that
             qw-reward --verifier math checks.

The reasoning stage holds the task too, as text ("Question: …", the trace,
the boxed answer), so that the tokenizer and the pretrained model know its
words.  --max-digits D sets the task's difficulty (operands of 2 to D
digits), --word-frac F its share of word problems.  --exclude FILE (a
problems file, repeatable) keeps every question in it out of the output:
the held-out problems are generated first, from their own seed, and
everything trained on excludes them.

Deterministic: the same --seed and --docs give byte-identical output.
Only the Python standard library is used.

  python3 pipelines/gen_corpus.py --stage general --docs 20000 --seed 1
"""
import argparse
import json
import random
import signal
import sys

NAMES = ["Ada", "Ben", "Chen", "Dara", "Emil", "Farah", "Goro", "Hana", "Ivan", "Jade",
         "Kofi", "Lena", "Mateo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tara"]
ANIMALS = ["cat", "dog", "fox", "owl", "horse", "rabbit", "goat", "duck", "bear", "mouse"]
PLACES = ["the market", "the river", "the old mill", "the library", "the garden",
          "the harbour", "the hill", "the school", "the bakery", "the forest"]
OBJECTS = ["a red kite", "a blue box", "a small key", "a wooden spoon", "a map",
           "a green lamp", "a silver coin", "a book of songs", "a clay pot", "a warm coat"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "brown", "grey"]
ADJ = ["quiet", "busy", "cold", "bright", "narrow", "wide", "old", "new", "tall", "small"]
VERBS_PAST = ["walked to", "ran to", "looked at", "found", "visited", "painted", "cleaned", "left"]
WEATHER = ["It was raining.", "The sun was out.", "A cold wind blew.", "Snow covered the roofs.",
           "The air was still and warm.", "Fog lay over the water."]
NUMWORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "ten", "eleven", "twelve"]


def cap(s):
    return s[0].upper() + s[1:]


def story(r):
    a, b = r.sample(NAMES, 2)
    pet = r.choice(ANIMALS)
    place, place2 = r.sample(PLACES, 2)
    obj = r.choice(OBJECTS)
    n = r.randint(2, 9)
    lines = [
        f"{a} had a {r.choice(COLOURS)} {pet}.",
        r.choice(WEATHER),
        f"In the morning {a} {r.choice(VERBS_PAST)} {place} with the {pet}.",
        f"There {a} met {b}, who was carrying {obj}.",
        f"\"Where are you going?\" asked {a}.",
        f"\"To {place2},\" said {b}. \"I have {NUMWORDS[n]} letters to deliver.\"",
        f"{a} and {b} went to {place2} together.",
        f"{cap(place2)} was {r.choice(ADJ)} and {r.choice(ADJ)}.",
        f"When they arrived, {b} gave {a} {obj}.",
        f"The {pet} slept under a {r.choice(ADJ)} tree until evening.",
    ]
    k = r.randint(5, len(lines))
    return " ".join(lines[:k])


def description(r):
    place = r.choice(PLACES)
    items = r.sample(OBJECTS, 3)
    return (f"{cap(place)} is {r.choice(ADJ)}. Inside you can find {items[0]}, {items[1]} and {items[2]}. "
            f"People come here when it is {r.choice(['early', 'late', 'noon', 'dark'])}. "
            f"The walls are {r.choice(COLOURS)} and the door is {r.choice(COLOURS)}.")


def dialogue(r):
    a, b = r.sample(NAMES, 2)
    x, y = r.randint(1, 20), r.randint(1, 20)
    return (f"{a}: How many {r.choice(ANIMALS)}s did you see today?\n"
            f"{b}: I saw {x} in the morning and {y} in the afternoon.\n"
            f"{a}: So you saw {x + y} in all.\n{b}: Yes, {x + y}.")


def arithmetic(r):
    ops = [("plus", lambda p, q: p + q, "+"), ("minus", lambda p, q: p - q, "-"),
           ("times", lambda p, q: p * q, "*")]
    name, f, sym = r.choice(ops)
    p, q = r.randint(2, 99), r.randint(2, 99)
    if name == "minus" and q > p:
        p, q = q, p
    if name == "times":
        q = r.randint(2, 12)
        tens, ones = divmod(p, 10)
        steps = (f"{p} = {tens * 10} + {ones}. {tens * 10} {sym} {q} = {tens * 10 * q}. "
                 f"{ones} {sym} {q} = {ones * q}. {tens * 10 * q} + {ones * q} = {f(p, q)}.")
    else:
        tens, ones = q - q % 10, q % 10
        mid = f(p, tens)
        steps = f"{p} {sym} {q} = {p} {sym} {tens} {sym} {ones}. {p} {sym} {tens} = {mid}. {mid} {sym} {ones} = {f(mid, ones)}."
    who = r.choice(NAMES)
    return (f"Question: {who} computes {p} {name} {q}. What is the answer?\n"
            f"<think>\n{steps}\n</think>\n\nAnswer: {f(p, q)}")


def list_problem(r):
    xs = [r.randint(1, 50) for _ in range(r.randint(3, 7))]
    kind = r.choice(["largest", "smallest", "sum"])
    val = {"largest": max(xs), "smallest": min(xs), "sum": sum(xs)}[kind]
    trace = []
    acc = xs[0]
    for x in xs[1:]:
        acc = {"largest": max(acc, x), "smallest": min(acc, x), "sum": acc + x}[kind]
        trace.append(str(acc))
    return (f"Question: what is the {kind} of {', '.join(map(str, xs))}?\n"
            f"<think>\nStart with {xs[0]}. Then " + ", then ".join(trace) + ".\n</think>\n\n"
            f"Answer: {val}")


def chat(r):
    """A worked problem as a conversation: the question from the user, the
    thinking and the answer from the assistant."""
    text = r.choice([arithmetic, list_problem])(r)
    question, answer = text.split("\n<think>", 1)
    return [{"role": "user", "content": question[len("Question: "):]},
            {"role": "assistant", "content": "<think>" + answer}]


THINGS = ["apples", "coins", "stamps", "marbles", "books", "shells", "beads", "cards", "eggs", "pens"]
PLACE_NAMES = ["ones", "tens", "hundreds", "thousands", "ten-thousands"]


def column_trace(x, y, op):
    """The column-by-column working of x op y (op "+" or "-", x >= y for
    "-"), right to left, as one line per column."""
    xs, ys = str(x)[::-1], str(y)[::-1]
    carry, lines = 0, []
    for i in range(len(xs)):
        dx, dy = int(xs[i]), int(ys[i]) if i < len(ys) else 0
        col = PLACE_NAMES[i]
        if op == "+":
            s = dx + dy + carry
            expr = f"{dx} + {dy}" + (" + 1" if carry else "")
            carry = s // 10
            lines.append(f"{col}: {expr} = {s}, write {s % 10}" + (", carry 1." if carry else "."))
        else:
            expr = f"{dx} - {dy}" + (" - 1" if carry else "")
            d = dx - dy - carry
            if d < 0:
                lines.append(f"{col}: {expr} needs a borrow: 1{expr} = {d + 10}, write {d + 10}, borrow 1.")
                carry = 1
            else:
                lines.append(f"{col}: {expr} = {d}, write {d}.")
                carry = 0
    if op == "+" and carry:
        lines.append(f"{PLACE_NAMES[len(xs)]}: write 1.")
    result = x + y if op == "+" else x - y
    lines.append(f"So {x} {op} {y} = {result}.")
    return "\n".join(lines), result


def task(r, max_digits, word_frac):
    """One problem of the post-training task: (question, reasoning, answer);
    a word problem with probability word_frac, else a bare sum or difference."""
    def operand():
        d = r.randint(2, max_digits)
        return r.randint(10 ** (d - 1), 10 ** d - 1)
    x, y = operand(), operand()
    op = r.choice("+-")
    if op == "-" and y > x:
        x, y = y, x
    if len(str(x)) < len(str(y)):  # the columns follow the longer number
        first, second = y, x
    else:
        first, second = x, y
    if r.random() >= word_frac:
        question = f"What is {x} {op} {y}?"
        setup = ""
    else:
        a, b = r.sample(NAMES, 2)
        things = r.choice(THINGS)
        if op == "+":
            question = f"{a} has {x} {things}. {b} gives {a} {y} more. How many {things} does {a} have now?"
            setup = f"{a} has {x} and gets {y} more, so add: {x} + {y}.\n"
        else:
            question = f"{a} has {x} {things} and gives {y} of them to {b}. How many {things} does {a} have left?"
            setup = f"{a} has {x} and gives away {y}, so subtract: {x} - {y}.\n"
    trace, result = column_trace(first, second, op)
    return question, setup + trace, str(result)


def task_text(q, reasoning, answer):
    return f"<think>\n{reasoning}\n</think>\n\nThe answer is \\boxed{{{answer}}}."


def code(r):
    fname = r.choice(["add", "scale", "clamp", "count_even", "first_positive"])
    a, b = r.randint(1, 9), r.randint(1, 9)
    bodies = {
        "add": (f"def add(x, y):\n    \"\"\"Return x + y.\n\n    >>> add({a}, {b})\n    {a + b}\n    \"\"\"\n"
                "    return x + y\n"),
        "scale": (f"def scale(xs, k):\n    \"\"\"Multiply every item by k.\n\n    >>> scale([{a}, {b}], 2)\n"
                  f"    [{2 * a}, {2 * b}]\n    \"\"\"\n    return [k * x for x in xs]\n"),
        "clamp": (f"def clamp(x, lo, hi):\n    \"\"\"Limit x to [lo, hi].\n\n    >>> clamp({a + 10}, 0, 10)\n"
                  "    10\n    \"\"\"\n    return max(lo, min(hi, x))\n"),
        "count_even": (f"def count_even(xs):\n    \"\"\"Count the even numbers.\n\n    >>> count_even([{a}, {b}, 4])\n"
                       f"    {sum(1 for x in (a, b, 4) if x % 2 == 0)}\n    \"\"\"\n"
                       "    return sum(1 for x in xs if x % 2 == 0)\n"),
        "first_positive": ("def first_positive(xs):\n    \"\"\"Return the first item > 0, or None.\n\n"
                           f"    >>> first_positive([-{a}, {b}, 3])\n    {b}\n    \"\"\"\n"
                           "    for x in xs:\n        if x > 0:\n            return x\n    return None\n"),
    }
    return bodies[fname]


def long_doc(r, target_chars):
    facts = {}
    parts = []
    for name in r.sample(NAMES, 6):
        facts[name] = (r.choice(PLACES), r.choice(OBJECTS))
        parts.append(f"{name} lives near {facts[name][0]} and keeps {facts[name][1]}.")
    while sum(len(p) + 1 for p in parts) < target_chars:
        parts.append(r.choice([story, description, dialogue])(r))
    name = r.choice(list(facts))
    parts.append(f"Question: what does {name} keep? Answer: {facts[name][1]}.")
    return "\n\n".join(parts)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=["general", "reasoning", "long", "chat", "cot", "problems"],
                    required=True)
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--long-chars", type=int, default=6000, help="characters per long document")
    ap.add_argument("--max-digits", type=int, default=3, help="the task's operands have 2 to D digits")
    ap.add_argument("--word-frac", type=float, default=0.5, help="the task's share of word problems (default 0.5)")
    ap.add_argument("--exclude", action="append", default=[], metavar="FILE",
                    help="a problems file whose questions are never written (repeatable)")
    args = ap.parse_args()
    if args.max_digits < 2 or args.max_digits > len(PLACE_NAMES) - 1:
        ap.error(f"--max-digits must be 2 to {len(PLACE_NAMES) - 1}")
    excluded = set()
    for name in args.exclude:
        with open(name, encoding="utf-8") as f:
            excluded.update(json.loads(line)["messages"][-1]["content"] for line in f if line.strip())
    r = random.Random(f"{args.stage}-{args.seed}")
    out = sys.stdout
    seen = set()

    def fresh_task():
        # a problem not excluded and, within one output, not repeated (the
        # space of problems is large: a few draws at most)
        for _ in range(1000):
            q, reasoning, answer = task(r, args.max_digits, args.word_frac)
            if q not in excluded and q not in seen:
                seen.add(q)
                return q, reasoning, answer
        sys.exit("gen_corpus.py: too few distinct problems left: raise --max-digits or lower --docs")

    for _ in range(args.docs):
        if args.stage == "general":
            text = r.choice([story, story, description, dialogue])(r)
        elif args.stage == "reasoning":
            kind = r.choice(["arithmetic", "arithmetic", "list", "code", "task", "task"])
            if kind == "task":
                q, reasoning, answer = fresh_task()
                text = f"Question: {q}\n" + task_text(q, reasoning, answer)
            else:
                text = {"arithmetic": arithmetic, "list": list_problem, "code": code}[kind](r)
        elif args.stage == "chat":
            out.write(json.dumps({"messages": chat(r)}, ensure_ascii=False) + "\n")
            continue
        elif args.stage == "cot":
            q, reasoning, answer = fresh_task()
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": task_text(q, reasoning, answer)}]
            out.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
            continue
        elif args.stage == "problems":
            q, _, answer = fresh_task()
            out.write(json.dumps({"messages": [{"role": "user", "content": q}], "answer": answer},
                                 ensure_ascii=False) + "\n")
            continue
        else:
            text = long_doc(r, args.long_chars)
        out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
