"""Real math benchmarks (MATH-500, GSM8K and anything in their formats) from a local JSONL or Parquet file, or from
the ``datasets`` library when it is installed and a hub is reachable (never required).

    python -m search.run task=math500 task.path=/data/math500/test.jsonl policy=qwen2.5-math-1.5b
    python -m search.run task=gsm8k task.path=/data/gsm8k/test.jsonl policy=llama-3.2-1b
    python -m search.run task=math_sample                                  # the shipped 12-problem sample

Prompts are rendered once per problem: ``prompt_template`` (must contain ``{problem}``) filled with the problem
text, then, when ``chat_tokenizer`` is set, wrapped by that tokenizer's own chat template (a system message, the
user turn, the generation prompt), so a chat model's step-wise continuation goes through the plain completions
endpoint with the rendered prompt. Final answers are the last ``\\boxed{...}`` of a solution (or the text after
``####``, GSM8K's marker) and are graded with math-verify, which compares them as mathematical objects (fractions,
decimals, LaTeX expressions, sets, intervals, equivalent forms); nothing is ever passed to Python's eval.

Steps are separated by ``step_delimiter`` (a blank line by default, as in MATH solutions and in the PRM800K and
Qwen-PRM conventions), so process verifiers and step-wise strategies work on real solutions. There is no exact step
checker for real data: process scores come from a learned PRM (``verifier=qwen2.5-math-prm`` or
``verifier=math-shepherd``).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from search.contracts import LabError, Problem

# math-verify warns on every call that its timeout is off; the lab turns it off on purpose (see ``equivalent``).
logging.getLogger("math_verify").setLevel(logging.ERROR)

SHIPPED_DATA = Path(__file__).resolve().parent / "data"
"""Sample files shipped with the package; ``task.path`` may name one of them by file name."""
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
"""The system message of the Qwen2.5-Math evaluation convention (used when ``chat_tokenizer`` is set)."""


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; None if none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j].strip()
    return None


def gsm8k_answer(text: str) -> str | None:
    """The text after the last ``####`` (GSM8K's final-answer marker), commas dropped; None if absent."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().replace(",", "")
    return answer or None


def equivalent(reference: str, answer: str) -> bool:
    """Whether two final answers are the same mathematical object, by math-verify (timeouts off: the runner grades
    in worker threads, where math-verify's signal-based timeout cannot run)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    gold = parse(f"${reference}$", extraction_config=configs, parsing_timeout=None)
    pred = parse(f"${answer}$", extraction_config=configs, parsing_timeout=None)
    if not gold or not pred:
        return reference.strip() == answer.strip()
    return bool(verify(gold, pred, timeout_seconds=None))


class MathTask:
    """Problems from a file in the MATH or GSM8K format, graded by math-verify."""

    has_step_checker = False
    """Real solutions have no reference steps: ``check_steps`` refuses (the process oracle needs the tiny task)."""
    difficulty_key = "level"
    """MATH's difficulty field (1-5); absent in GSM8K (every problem in one bin)."""

    def __init__(self, path: str, name: str = "math", problem_field: str = "problem", answer_field: str = "answer",
                 answer_format: str = "plain", id_field: str | None = "unique_id",
                 prompt_template: str = "{problem}", chat_tokenizer: str | None = None,
                 system_prompt: str | None = SYSTEM_PROMPT, step_delimiter: str = "\n\n",
                 metadata_fields: Sequence[str] = ("level", "subject"), split: str | None = None):
        """``path``: a .jsonl or .parquet file, or ``hf:NAME[:CONFIG]`` to load with the datasets library;
        ``problem_field`` / ``answer_field``: the fields with the problem text and the reference answer;
        ``answer_format``: ``plain`` (the field is the answer), ``boxed`` (take its last \\boxed{}) or ``gsm8k``
        (take the text after ####); ``id_field``: a unique id field (None: a hash of the problem text);
        ``prompt_template``: the user message, with ``{problem}``; ``chat_tokenizer``: a tokenizer directory or
        name whose chat template wraps the message (None: the message is the prompt); ``system_prompt``: the chat's
        system message (None: none); ``step_delimiter``: what separates steps; ``metadata_fields``: fields copied
        into each problem's metadata; ``split``: the split to load with the datasets library."""
        if "{problem}" not in prompt_template:
            raise LabError(f"task.prompt_template={prompt_template!r} has no {{problem}} placeholder: add {{problem}} "
                           f"where the problem text goes")
        if answer_format not in ("plain", "boxed", "gsm8k"):
            raise LabError(f"task.answer_format={answer_format!r}: use plain, boxed or gsm8k")
        if not step_delimiter:
            raise LabError("task.step_delimiter is empty: give the text between steps, e.g. '\\n\\n'")
        self.path, self.name = path, name
        self.problem_field, self.answer_field, self.answer_format = problem_field, answer_field, answer_format
        self.id_field, self.prompt_template = id_field, prompt_template
        self.chat_tokenizer, self.system_prompt = chat_tokenizer, system_prompt
        self.step_delimiter = step_delimiter
        self.metadata_fields, self.split = tuple(metadata_fields), split
        self._problems: list[Problem] | None = None
        self._questions: dict[str, str] = {}

    # -- loading ----------------------------------------------------------------------------------------------
    def _rows(self) -> list[tuple[str, dict]]:
        """(where, row) pairs; ``where`` names the file and line for error messages."""
        if self.path.startswith("hf:"):
            try:
                import datasets
            except ImportError:
                raise LabError(f"task.path={self.path} needs the datasets library: pip install datasets, or give a "
                               f"local .jsonl/.parquet file") from None
            name, _, config = self.path[3:].partition(":")
            ds = datasets.load_dataset(name, config or None, split=self.split or "test")
            return [(f"{self.path}[{i}]", dict(row)) for i, row in enumerate(ds)]
        path = Path(self.path).expanduser()
        if not path.is_file() and (SHIPPED_DATA / self.path).is_file():
            path = SHIPPED_DATA / self.path
        if not path.is_file():
            raise LabError(f"task.path={self.path}: no such file; give a .jsonl or .parquet file of problems")
        if path.suffix == ".parquet":
            import pandas as pd

            return [(f"{path} row {i + 1}", row) for i, row in enumerate(pd.read_parquet(path).to_dict("records"))]
        rows = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append((f"{path}:{n}", json.loads(line)))
                except json.JSONDecodeError as err:
                    raise LabError(f"{path}:{n}: not a JSON object ({err.msg}); fix or remove the line") from None
        return rows

    def _reference(self, where: str, row: dict) -> str:
        if self.answer_field not in row or row[self.answer_field] in (None, ""):
            raise LabError(f"{where}: no '{self.answer_field}' field; set task.answer_field to the field that holds "
                           f"the reference answer (fields here: {', '.join(sorted(row))})")
        raw = str(row[self.answer_field])
        ref = {"plain": raw.strip(), "boxed": last_boxed(raw), "gsm8k": gsm8k_answer(raw)}[self.answer_format]
        if not ref:
            raise LabError(f"{where}: the '{self.answer_field}' field has no {self.answer_format} answer; check "
                           f"task.answer_format")
        return ref

    def render(self, text: str) -> str:
        """The prompt for one problem text (template, then the chat template when set)."""
        message = self.prompt_template.format(problem=text)
        if not self.chat_tokenizer:
            return message
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        messages.append({"role": "user", "content": message})
        tok = self._tokenizer()
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # A template that writes the BOS token itself (Llama 3's) would get a second one from the server, which
        # tokenizes a completions prompt with the special tokens added: keep one, the one the tokenizer adds.
        bos = tok.bos_token
        if bos and text.startswith(bos) and tok("x").input_ids[:1] == [tok.bos_token_id]:
            text = text[len(bos):]
        return text

    def _tokenizer(self):
        if not hasattr(self, "_tok"):
            from transformers import AutoTokenizer

            from search.serving import checkpoint as ckpt

            source = str(ckpt.SHIPPED.get(self.chat_tokenizer, Path(self.chat_tokenizer).expanduser()))
            try:
                self._tok = AutoTokenizer.from_pretrained(source)
            except (OSError, ValueError) as err:
                raise LabError(f"task.chat_tokenizer={self.chat_tokenizer}: cannot load a tokenizer ({err}); give a "
                               f"local model directory") from None
            if not getattr(self._tok, "chat_template", None):
                raise LabError(f"task.chat_tokenizer={self.chat_tokenizer} has no chat template: give a chat model's "
                               f"tokenizer, or set task.chat_tokenizer=null and write the prompt in task.prompt_template")
        return self._tok

    def _load(self) -> list[Problem]:
        if self._problems is None:
            out, seen = [], set()
            for where, row in self._rows():
                if self.problem_field not in row:
                    raise LabError(f"{where}: no '{self.problem_field}' field; set task.problem_field (fields here: "
                                   f"{', '.join(sorted(row))})")
                text = str(row[self.problem_field])
                pid = str(row[self.id_field]) if self.id_field and row.get(self.id_field) is not None else \
                    hashlib.sha256(text.encode()).hexdigest()[:12]
                if pid in seen:
                    raise LabError(f"{where}: duplicate id {pid!r}; set task.id_field to a unique field (or null)")
                seen.add(pid)
                self._questions[pid] = text
                meta: dict[str, Any] = {k: row[k] for k in self.metadata_fields if k in row}
                out.append(Problem(id=pid, prompt=self.render(text), reference=self._reference(where, row),
                                   metadata=meta))
            self._problems = out
        return self._problems

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        """The file's problems (it is the evaluation split; there is no training split), the first n when given."""
        if split != "eval":
            raise LabError(f"task {self.name} has only an eval split (the file {self.path}); split '{split}' is not "
                           f"available")
        problems = self._load()
        return problems if n is None else problems[:n]

    def question(self, problem: Problem) -> str:
        """The problem as the file writes it, before the prompt and chat templates: what a reward model that lays
        out its own input (Qwen2.5-Math-PRM's chat turns, Math-Shepherd's question-then-steps) reads."""
        self._load()
        return self._questions.get(problem.id, problem.prompt)

    # -- reading solutions ------------------------------------------------------------------------------------
    def split_steps(self, text: str) -> tuple[str, ...]:
        return tuple(s.strip() for s in text.strip().split(self.step_delimiter) if s.strip())

    def extract_answer(self, text: str) -> str | None:
        """The last \\boxed{} of the solution, else the text after ####, else None."""
        return last_boxed(text) or gsm8k_answer(text)

    def grade(self, problem: Problem, answer: str | None) -> bool:
        return answer is not None and equivalent(problem.reference, answer)

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> tuple[bool, ...]:
        raise LabError(f"task {self.name} has no exact step checker (real solutions have no reference steps): use a "
                       f"learned process verifier, e.g. verifier=qwen2.5-math-prm, not verifier=process_oracle")
