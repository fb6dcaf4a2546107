"""Answer extraction and matching: the known traps, symbolic equivalence, and never raising on output."""

import random
import subprocess
import sys
import threading
import time

import pytest

from data_tools import answers
from data_tools.answers import answers_match, extract_answer


@pytest.mark.parametrize("predicted,gold", [
    ("0.5", "1/2"), ("1/2", "\\frac{1}{2}"), ("\\frac{1}{2}", "0.5"), ("\\dfrac12", "0.5"),
    ("1,000", "1000"), ("$18", "18"), ("18.00", "18"), ("\\$18.", "18"), ("$\\boxed{18}$", "18"),
    ("40,\\!000", "40000"), ("-3", "-3.0"),
])
def test_equal_numbers_match_exactly(predicted, gold):
    verdict = answers_match(predicted, gold)
    assert verdict.correct and verdict.reason == "equal"


@pytest.mark.parametrize("predicted,gold", [("1", "12"), ("12", "1"), ("0.5", "0.55"), ("1,001", "1000"),
                                            ("-18", "18"), ("1/3", "0.33")])
def test_different_numbers_do_not_match(predicted, gold):
    verdict = answers_match(predicted, gold)
    assert not verdict.correct and "!=" in verdict.reason


@pytest.mark.parametrize("predicted,gold", [("x^2+2x", "x(x+2)"), ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
                                            ("(1,2)", "(1, 2)")])
def test_symbolic_equivalence_goes_through_math_verify(predicted, gold):
    verdict = answers_match(predicted, gold)
    assert verdict.correct and "math-verify" in verdict.reason
    assert not answers_match(predicted, "x^3").correct


def test_unparseable_predictions_are_verdicts():
    for predicted in [None, "", "   ", "{{{", 42]:
        verdict = answers_match(predicted, "5")
        assert not verdict.correct and verdict.reason.startswith("unparseable")


def test_never_raises_on_model_output():
    rng = random.Random(0)
    alphabet = list("0123456789+-*/^()[]{}\\$.,=xyz ") + ["\\frac", "\\boxed{", "\\sqrt", "}", "\\infty", "\n"]
    for _ in range(150):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        verdict = answers_match(extract_answer(text), "\\frac{1}{2}")
        assert isinstance(verdict.correct, bool) and verdict.reason


def test_extractors_and_their_order():
    assert extract_answer("so \\boxed{\\frac{1}{2}} is it. The answer is 3") == "\\frac{1}{2}"
    assert extract_answer("The answer is 6.") == "6"
    assert extract_answer("The answer is: 1,000 apples.") == "1,000"
    assert extract_answer("The final answer is $x^2$. I hope it is correct.") == "x^2"
    assert extract_answer("Natalia sold 72 clips.\n#### 72") == "72"
    assert extract_answer("The answer is therefore 3.") == "3"
    assert extract_answer("so the final answer is 15 gallons * 8 = <<15*8=120>>120 pints\n#### 120") == "120"
    assert extract_answer("3 boxes of 4 is 12") == "12"
    assert extract_answer("she ate 1/2 of it") == "1/2"
    assert extract_answer("no digits at all") is None
    assert extract_answer(None) is None
    text = "The answer is 6. \\boxed{7}"
    assert extract_answer(text) == "7"
    assert extract_answer(text, order=("answer_is", "boxed")) == "6"
    with pytest.raises(ValueError, match="unknown answer extractor"):
        extract_answer(text, order=("first_number",))


def test_plain_numbers_never_load_math_verify():
    code = ("import sys; from data_tools.answers import answers_match as m; "
            "assert m('18.00', '18').correct and not m('1', '12').correct; print('math_verify' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_works_from_a_worker_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(answers_match("x^2+2x", "x(x+2)")))
    worker.start()
    worker.join()
    assert results and results[0].correct


def test_timeout_off_the_main_thread_returns_a_verdict(monkeypatch):
    monkeypatch.setattr(answers, "_symbolic", lambda p, g, t: time.sleep(5))
    results = []
    worker = threading.Thread(target=lambda: results.append(answers_match("x", "y", timeout_s=0.2)))
    start = time.perf_counter()
    worker.start()
    worker.join()
    assert time.perf_counter() - start < 2
    assert not results[0].correct and results[0].reason.startswith("timeout")


def test_timeout_in_the_main_thread_returns_a_verdict(monkeypatch):
    from math_verify.errors import TimeoutException

    def slow(predicted, gold, timeout):
        assert timeout == 1  # math-verify's SIGALRM timer takes whole seconds
        raise TimeoutException("Operation timed out!")

    monkeypatch.setattr(answers, "_symbolic", slow)
    verdict = answers_match("x", "y", timeout_s=0.3)
    assert not verdict.correct and verdict.reason.startswith("timeout")
