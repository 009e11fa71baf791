"""Prompt styles: the exact text a model is given for a problem, comparable with the field's harnesses.

| style | text |
|---|---|
| `plain` | the task's own template (math tasks: `Problem: {question}` / the boxed instruction / `Solution:`) |
| `paper` | `{question}` + newline + `Please reason step by step, and put your final answer within \\boxed{}.` |
| `gsm8k-cot` | lm-evaluation-harness `gsm8k_cot`: 8 worked examples `Q: …` / `A: … The answer is N.`, then `Q: {question}` / `A:` |
| `minerva` | lm-evaluation-harness `minerva_math`: 4 worked examples `Problem:` / … / `Solution: …`, then the problem |
| `chat` | the tokenizer's chat template, the `paper` text as the user turn, an optional system prompt |

`--fewshot N` takes the first N worked examples of a few-shot style (the harnesses' `first_n` sampler);
`--prompt-template FILE` replaces the style with a file holding `{question}` (plain text) or a Jinja
template using `{{ question }}` (rendered in Jinja's sandbox: a template cannot reach Python objects).
The worked examples are the harnesses' published exemplars (the chain-of-thought paper's Table 20 for
GSM8K, the Minerva paper's four MATH examples), reproduced as data so scores compare with theirs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiseft.errors import ConfigError, TaskError

PAPER_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MAX_TEMPLATE_BYTES = 64 << 10


@dataclass(frozen=True)
class Shot:
    question: str
    answer: str


@dataclass(frozen=True)
class FewShotStyle:
    """`query` renders the problem (`{question}`), `shot` one worked example (`{question}`, `{answer}`);
    the examples and the query are joined by `delimiter`; `stop` ends generation."""

    query: str
    shot: str
    shots: tuple[Shot, ...]
    stop: tuple[str, ...]
    delimiter: str = "\n\n"


GSM8K_SHOTS = (
    Shot("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
         "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6."),
    Shot("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
         "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    Shot("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
         "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39."),
    Shot("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
         "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8."),
    Shot("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
         "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9."),
    Shot("There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
         "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29."),
    Shot("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
         "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33."),
    Shot("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
         "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8."),
)  # fmt: skip

MINERVA_SHOTS = (
    Shot("Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
         "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct."),
    Shot("If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
         "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct."),
    Shot("Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?",
         "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. I hope it is correct."),
    Shot("If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
         "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct."),
)  # fmt: skip

FEWSHOT = {
    "gsm8k-cot": FewShotStyle("Q: {question}\nA:", "Q: {question}\nA: {answer}", GSM8K_SHOTS, ("Q:", "</s>", "<|im_end|>")),
    "minerva": FewShotStyle("Problem:\n{question}\n\nSolution:", "Problem:\n{question}\n\nSolution: {answer}", MINERVA_SHOTS, ("Problem:",)),
}  # fmt: skip
STYLES = ("plain", "paper", "gsm8k-cot", "minerva", "chat")


@dataclass(frozen=True)
class Prompter:
    """How every problem of a run is rendered: a style (or a template file), few-shot count, system
    prompt. Built once per run (`make_prompter`); `render(question, task_template, instruction, tokenizer)`."""

    style: str = "plain"
    fewshot: int = 0
    system: str | None = None
    template: str | None = None  # the text of a --prompt-template file
    jinja: bool = False

    def stop(self, task_stop: tuple[str, ...]) -> tuple[str, ...]:
        """Stop strings: the few-shot style's (they end a worked example), else the task's."""
        return FEWSHOT[self.style].stop if self.style in FEWSHOT else tuple(task_stop)

    def render(self, question: str, task_template: str, instruction: str, tokenizer: Any = None) -> str:
        if self.template is not None:
            return _render_template(self.template, question, self.jinja)
        if self.style == "plain":
            return task_template.replace("{question}", question)
        if self.style == "paper":
            return f"{question}\n{PAPER_INSTRUCTION}"
        if self.style == "chat":
            return _chat(question, instruction, self.system, tokenizer)
        fs = FEWSHOT[self.style]
        shots = [
            fs.shot.replace("{question}", s.question).replace("{answer}", s.answer)
            for s in fs.shots[: self.fewshot]
        ]
        return fs.delimiter.join([*shots, fs.query.replace("{question}", question)])


def make_prompter(
    style: str = "plain",
    fewshot: int | None = None,
    system: str | None = None,
    template_file: str | None = None,
) -> Prompter:
    """Check the prompt flags together and build the run's `Prompter` (one-line errors naming the flag)."""
    if style not in STYLES:
        raise ConfigError(f"--prompt must be one of {', '.join(STYLES)}, got {style!r}")
    if system is not None and style != "chat":
        raise ConfigError(
            "--system-prompt needs --prompt chat (a system turn exists only in a chat template)"
        )
    if fewshot is not None and style not in FEWSHOT:
        raise ConfigError(
            f"--fewshot applies to the few-shot styles ({', '.join(FEWSHOT)}); --prompt {style} has no worked examples"
        )
    available = len(FEWSHOT[style].shots) if style in FEWSHOT else 0
    n = available if fewshot is None else fewshot
    if not 0 <= n <= available:
        raise ConfigError(f"--fewshot must lie in 0..{available} for --prompt {style}, got {fewshot}")
    if template_file is None:
        return Prompter(style, n, system)
    if style != "plain":
        raise ConfigError(f"--prompt-template replaces the prompt style; drop --prompt {style}")
    text, jinja = _read_template(template_file)
    return Prompter("template", 0, None, text, jinja)


def _read_template(path: str) -> tuple[str, bool]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--prompt-template {p} does not exist")
    if p.stat().st_size > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"--prompt-template {p} is larger than {MAX_TEMPLATE_BYTES >> 10} KiB")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--prompt-template {p} is not UTF-8 text") from None
    jinja = "{{" in text or "{%" in text
    if jinja:
        _compile(text, str(p))
    if ("question" not in text) if jinja else ("{question}" not in text):
        raise ConfigError(
            f"--prompt-template {p} never uses the question: write {{question}} (or {{{{ question }}}})"
        )
    return text, jinja


@functools.lru_cache(maxsize=8)
def _compile(text: str, where: str):
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        return ImmutableSandboxedEnvironment(keep_trailing_newline=True).from_string(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(
            f"--prompt-template {where}: not a valid Jinja template (line {exc.lineno}: {exc.message})"
        ) from None


def _render_template(text: str, question: str, jinja: bool) -> str:
    if not jinja:
        return text.replace("{question}", question)
    from jinja2 import TemplateError

    try:
        return _compile(text, "template").render(question=question)
    except TemplateError as exc:
        raise TaskError(f"--prompt-template: rendering failed ({exc})") from None


def _chat(question: str, instruction: str, system: str | None, tokenizer: Any) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise TaskError(
            "--prompt chat needs a tokenizer with a chat template; this model has none, use --prompt plain"
        )
    content = f"{question}\n{instruction}" if instruction else question
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": content}
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
