"""Generated math problems with worked solutions whose answers are checked by computation.

The embedded math corpus and the embedded math SFT set come from here, so the product runs offline
with no downloaded data. Every problem is built from random integers and its answer is computed
(and, where a solution is derived step by step, re-checked against an independent computation), so
the sample never teaches a wrong result. Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

# Bumped whenever the same (count, seed) would produce different problems, so cached samples are rewritten.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class MathProblem:
    id: str
    kind: str
    question: str
    solution: str  # worked solution ending with "The answer is X."
    answer: str

    def as_document(self) -> str:
        return f"Problem: {self.question}\n\nSolution: {self.solution}\n"


def _linear_equation(rng: random.Random) -> tuple[str, str, str]:
    x = rng.randint(-12, 12)
    a = rng.choice([i for i in range(-9, 10) if i not in (0,)])
    b = rng.randint(-30, 30)
    c = a * x + b
    question = f"Solve for $x$: ${a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}$."
    solution = (
        f"Subtract {b} from both sides: ${a}x = {c} - ({b}) = {c - b}$. "
        f"Divide by {a}: $x = \\frac{{{c - b}}}{{{a}}} = {x}$. The answer is {x}."
    )
    assert a * x + b == c and (c - b) // a == x
    return question, solution, str(x)


def _word_problem(rng: random.Random) -> tuple[str, str, str]:
    name = rng.choice(["Ana", "Bilal", "Chen", "Dara", "Eitan", "Fatima", "Goran", "Hana"])
    item = rng.choice(["apples", "pencils", "stickers", "marbles", "books", "cookies"])
    packs, per_pack, given, price = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 10), rng.randint(2, 15)
    total = packs * per_pack
    given = min(given, total - 1)
    left = total - given
    cost = packs * price
    question = (
        f"{name} buys {packs} packs of {item} with {per_pack} {item} in each pack, at ${price} per pack. "
        f"{name} gives away {given} {item}. How many {item} are left, and how much did the packs cost?"
    )
    solution = (
        f"{name} has {packs} x {per_pack} = {total} {item}. After giving away {given}, {total} - {given} = {left} "
        f"are left. The packs cost {packs} x ${price} = ${cost}. The answer is {left} {item} and ${cost}."
    )
    return question, solution, f"{left}, {cost}"


def _fraction_sum(rng: random.Random) -> tuple[str, str, str]:
    a, b = Fraction(rng.randint(1, 9), rng.randint(2, 12)), Fraction(rng.randint(1, 9), rng.randint(2, 12))
    common = a.denominator * b.denominator // math.gcd(a.denominator, b.denominator)
    total = a + b
    question = f"Compute $\\frac{{{a.numerator}}}{{{a.denominator}}} + \\frac{{{b.numerator}}}{{{b.denominator}}}$ in lowest terms."
    solution = (
        f"The least common denominator is {common}. "
        f"$\\frac{{{a.numerator * (common // a.denominator)}}}{{{common}}} + \\frac{{{b.numerator * (common // b.denominator)}}}{{{common}}}"
        f" = \\frac{{{a.numerator * (common // a.denominator) + b.numerator * (common // b.denominator)}}}{{{common}}}$, "
        f"which reduces to $\\frac{{{total.numerator}}}{{{total.denominator}}}$. The answer is {total}."
    )
    return question, solution, str(total)


def _percentage(rng: random.Random) -> tuple[str, str, str]:
    price = rng.randint(4, 400) * 5
    pct = rng.choice([5, 10, 15, 20, 25, 30, 40, 50])
    discount = Fraction(price * pct, 100)
    final = price - discount
    question = f"A jacket costs ${price}. It is on sale for {pct}% off. What is the sale price?"
    solution = (
        f"The discount is {pct}% of {price}, that is $\\frac{{{pct}}}{{100}} \\times {price} = {_fmt(discount)}$. "
        f"The sale price is ${price} - {_fmt(discount)} = {_fmt(final)}$. The answer is {_fmt(final)}."
    )
    return question, solution, _fmt(final)


def _quadratic(rng: random.Random) -> tuple[str, str, str]:
    r1, r2 = rng.randint(-20, 20), rng.randint(-20, 20)
    b, c = -(r1 + r2), r1 * r2
    question = f"Find the roots of $x^2 {'+' if b >= 0 else '-'} {abs(b)}x {'+' if c >= 0 else '-'} {abs(c)} = 0$."
    disc = b * b - 4 * c
    root = math.isqrt(disc)
    lo, hi = sorted((r1, r2))
    assert root * root == disc and sorted(((-b - root) // 2, (-b + root) // 2)) == [lo, hi]
    solution = (
        f"The discriminant is $b^2 - 4ac = {b}^2 - 4 \\cdot {c} = {disc}$, so $\\sqrt{{{disc}}} = {root}$. "
        f"Then $x = \\frac{{{-b} \\pm {root}}}{{2}}$, giving $x = {lo}$ and $x = {hi}$. The answer is {lo}, {hi}."
    )
    return question, solution, f"{lo}, {hi}"


def _series(rng: random.Random) -> tuple[str, str, str]:
    first, step, count = rng.randint(1, 20), rng.randint(1, 9), rng.randint(5, 40)
    last = first + (count - 1) * step
    total = count * (first + last) // 2
    assert total == sum(first + i * step for i in range(count))
    question = f"What is the sum of the arithmetic sequence $ {first}, {first + step}, {first + 2 * step}, \\ldots, {last} $?"
    solution = (
        f"There are $\\frac{{{last} - {first}}}{{{step}}} + 1 = {count}$ terms. "
        f"The sum is $\\frac{{{count}({first} + {last})}}{{2}} = {total}$. The answer is {total}."
    )
    return question, solution, str(total)


def _gcd_lcm(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(6, 240), rng.randint(6, 240)
    g = math.gcd(a, b)
    lcm = a * b // g
    question = f"Find $\\gcd({a}, {b})$ and $\\operatorname{{lcm}}({a}, {b})$."
    solution = (
        f"By the Euclidean algorithm $\\gcd({a}, {b}) = {g}$. "
        f"Then $\\operatorname{{lcm}}({a}, {b}) = \\frac{{{a} \\cdot {b}}}{{{g}}} = {lcm}$. The answer is {g}, {lcm}."
    )
    return question, solution, f"{g}, {lcm}"


def _derivative(rng: random.Random) -> tuple[str, str, str]:
    coefficients = [rng.randint(-6, 6) for _ in range(rng.randint(2, 4))] + [rng.randint(1, 6)]
    x0 = rng.randint(-3, 3)
    poly = _poly(coefficients)
    derivative = [i * c for i, c in enumerate(coefficients)][1:]
    value = sum(c * x0**i for i, c in enumerate(derivative))
    question = f"Let $f(x) = {poly}$. Compute $f'({x0})$."
    solution = f"Differentiating term by term, $f'(x) = {_poly(derivative)}$. So $f'({x0}) = {value}$. The answer is {value}."
    return question, solution, str(value)


def _poly(coefficients: list[int]) -> str:
    terms = []
    for power in range(len(coefficients) - 1, -1, -1):
        c = coefficients[power]
        if c == 0:
            continue
        body = "" if power == 0 else ("x" if power == 1 else f"x^{power}")
        magnitude = str(abs(c)) if (abs(c) != 1 or power == 0) else ""
        sign = "-" if c < 0 else "+"
        terms.append((sign, magnitude + body))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    text = ("-" if first_sign == "-" else "") + first
    for sign, term in terms[1:]:
        text += f" {sign} {term}"
    return text


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"


GENERATORS: dict[str, Callable[[random.Random], tuple[str, str, str]]] = {
    "linear_equation": _linear_equation,
    "word_problem": _word_problem,
    "fraction_sum": _fraction_sum,
    "percentage": _percentage,
    "quadratic": _quadratic,
    "series": _series,
    "gcd_lcm": _gcd_lcm,
    "derivative": _derivative,
}


def generate_problems(count: int, seed: int = 0) -> list[MathProblem]:
    """``count`` distinct problems cycling through every kind, deterministic for ``seed``.

    Distinct because a corpus of repeats would only exercise exact dedup and teach less: a drawn
    problem whose text was already produced is drawn again. A kind whose small parameter space is
    used up (after ``_MAX_REPEATS`` repeats in a row) gives its turn to the others.
    """
    rng = random.Random(seed)
    kinds = sorted(GENERATORS)
    exhausted: set[str] = set()
    seen: set[str] = set()
    problems: list[MathProblem] = []
    turn = 0
    while len(problems) < count:
        if len(exhausted) == len(kinds):
            raise ValueError(f"only {len(problems)} distinct problems can be generated, {count} asked")
        kind = kinds[turn % len(kinds)]
        turn += 1
        if kind in exhausted:
            continue
        for _ in range(_MAX_REPEATS):
            question, solution, answer = GENERATORS[kind](rng)
            if question not in seen:
                seen.add(question)
                problems.append(MathProblem(f"gen-{seed}-{len(problems):06d}", kind, question, solution, answer))
                break
        else:
            exhausted.add(kind)
    return problems


_MAX_REPEATS = 200
