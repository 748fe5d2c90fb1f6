"""Walkthrough quizzes: answers come from the run, checking is fair, the CLI asks and grades."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.cli.walkthrough import ask
from netlab.errors import UsageError
from netlab.inspect.analyze import PacketRow
from netlab.inspect.quiz import QUIZZES, Question, questions
from netlab.inspect.render import walkthrough_markdown
from netlab.inspect.walkthrough_parts import Section, Walkthrough
from netlab.inspect.walkthroughs import WALKTHROUGHS
from netlab.testing.packets import EXCHANGE
from netlab.testing.servers import run_netlab_text


def handshake() -> Walkthrough:
    walkthrough = Walkthrough("tcp-handshake", "A command over TCP", "lesson")
    walkthrough.sections.append(Section("tcp4: one client, one command", "text", packets=list(EXCHANGE)))
    return walkthrough


def test_every_walkthrough_has_a_quiz() -> None:
    missing = set(WALKTHROUGHS) - set(QUIZZES)
    assert not missing, f"add questions for {', '.join(sorted(missing))} in netlab/inspect/quiz.py (QUIZZES)"


def test_answers_are_read_from_the_run() -> None:
    asked = questions(handshake())
    assert [question.answer for question in asked] == ["3", "60", str(89 + 89)]
    assert "packets 1-3" in asked[0].why


def test_checking_numbers_exactly_times_within_tolerance_and_words_ignoring_case() -> None:
    assert Question("q", "3", "").check(" 3 packets\n")
    assert not Question("q", "3", "").check("4")
    assert not Question("q", "3", "").check("three")
    assert Question("q", "1010", "", tolerance=0.25).check("1,200 ms")
    assert not Question("q", "1010", "", tolerance=0.25).check("2000")
    assert Question("q", "EAGAIN", "").check("eagain")


def test_ask_grades_the_answers(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("3\n60\n178\n"))
    assert ask(handshake()) is True
    assert "3 of 3 right" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("3\n61\n178\n"))
    assert ask(handshake()) is False
    assert "not quite: this run says 60" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("3\n"))
    with pytest.raises(UsageError, match="the quiz ended at question 2 of 3"):
        ask(handshake())


def test_the_lesson_lists_the_questions_with_the_answers_folded() -> None:
    text = walkthrough_markdown(handshake())
    questions_part = text[text.index("## Questions"):]
    assert questions_part.count("<details><summary>Answer</summary>") == 3
    assert "1. How many packets crossed before the first byte of the command did?" in questions_part
    assert "<details><summary>Answer</summary>3 (packets 1-3" in questions_part


def netlab(*arguments: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return run_netlab_text(*arguments, stdin=stdin, timeout=120)


def test_quiz_through_the_cli_exits_1_on_a_wrong_answer_and_2_when_input_ends() -> None:
    wrong = netlab("walkthrough", "sticky-packets", "--quiz", stdin="-1\n-1\n-1\n")
    assert wrong.returncode == 1, wrong.stderr
    assert "not quite: this run says" in wrong.stdout and "0 of 3 right." in wrong.stdout
    ended = netlab("walkthrough", "sticky-packets", "--quiz", stdin="")
    assert ended.returncode == 2
    assert ended.stderr.strip() == "netlab: the quiz ended at question 1 of 3: no more input to read"


def test_quiz_and_markdown_together_is_refused_and_makes_no_directory(tmp_path: Path) -> None:
    lessons, captures = tmp_path / "lessons", tmp_path / "captures"
    refused = netlab("walkthrough", "sticky-packets", "--quiz", "--markdown", str(lessons), "--pcap", str(captures),
                     stdin="")
    assert refused.returncode == 2 and "give one of them" in refused.stderr
    assert not lessons.exists() and not captures.exists()


def _capture(server_payloads: list[int], mss: str | None, retransmitted: int | None = None) -> list[PacketRow]:
    """A SYN (with an MSS option when given), then the server's segments; one of them marked RETRANSMIT."""
    syn = PacketRow(1, 0.0, "c:1", "s:2", "TCP", "SYN", 0, content=[f"MSS={mss}"] if mss else [])
    rows = [syn]
    for index, size in enumerate(server_payloads, start=2):
        again = index == retransmitted
        rows.append(PacketRow(index, index * 0.01, "s:2", "c:1", "TCP", "ACK", index - 1 if again else index, length=size,
                              content=["Output"], notes=["RETRANSMIT"] if again else []))
    return rows


def _walkthrough(name: str, *captures: tuple[str, list[PacketRow]]) -> Walkthrough:
    walkthrough = Walkthrough(name, name, "lesson")
    walkthrough.sections.append(Section("no capture here", "text"))
    for heading, rows in captures:
        walkthrough.sections.append(Section(heading, "text", packets=rows))
    return walkthrough


def test_capture_questions_name_each_capture_and_read_its_syn_and_segments() -> None:
    tcp6 = questions(_walkthrough("tcp6-vs-tcp4", ("tcp4 over loopback: one command", _capture([5], "65483")),
                                  ("tcp6 over loopback: one command", _capture([5, 5], "65476"))))
    assert [question.answer for question in tcp6] == ["65483", "65476", "3"]
    assert "tcp6 capture" in tcp6[1].why
    mtu = questions(_walkthrough("mtu-and-segmentation",
                                 ("veth, offloads off: 1500 MTU", _capture([1448, 1448, 100], "1460")),
                                 ("veth, offloads on: 1500 MTU", _capture([2896, 100], "1460"))))
    assert [question.answer for question in mtu] == ["3", "1460", "2896"]
    assert mtu[0].prompt.startswith("veth, offloads off: ")
    loss = questions(_walkthrough("delay-and-loss", ("1 % loss: 50 ms delay", _capture([10, 10, 10], None, 3))))
    assert [question.answer for question in loss] == ["1", "10"]
    assert loss[0].prompt.startswith("1 % loss: ")
