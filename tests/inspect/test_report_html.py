"""report.html in a real browser: headless Chromium (Debian's `chromium`, installed by
scripts/setup.sh) opens the page of a small real run from a file:// URL, offline, and the test
reads the DOM through the Chrome DevTools Protocol: the browsers' row counts equal the files, a
filter narrows the rows, a pair's texts are pairs.jsonl's, the tables are report.md's. It saves a
screenshot (path printed). The CDP client below is the standard library only (a websocket is a
few frames over a socket): nothing is downloaded at test time."""
from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from selfplay.config import load_config
from selfplay.core import io
from selfplay.inspect.report import write_report
from selfplay.run.loop import run_loop

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "build" / "report_screenshot.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")


class CDP:
    """One page of a headless Chromium, driven over the DevTools Protocol's websocket."""

    def __init__(self, width: int = 1280, height: int = 1800) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        # its chatter goes to a file, never an undrained pipe that would block it once full
        self.log = Path(self.profile) / "stderr.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                 "--remote-debugging-port=0",
                 f"--user-data-dir={self.profile}/profile", f"--window-size={width},{height}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=err)
        port = self._port()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.sock = self._connect(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events: list[dict] = []

    def _port(self) -> int:
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self.log.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not start its DevTools endpoint: {self.log.read_text()[-2000:]}")

    @staticmethod
    def _connect(url: str) -> socket.socket:
        m = re.fullmatch(r"ws://([\d.]+):(\d+)(/.*)", url)
        sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {m.group(3)} HTTP/1.1\r\nHost: {m.group(1)}:{m.group(2)}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        return sock

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("chromium closed the DevTools connection")
            buf += chunk
        return buf

    def _recv(self) -> dict:
        data = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            data += self._recv_exact(n)
            if b0 & 0x80:  # FIN: the message is whole
                return json.loads(data)

    def _send(self, obj: dict) -> None:
        payload, mask = json.dumps(obj).encode(), os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = self._recv()
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in r, r["exceptionDetails"]
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(expr)

    def open(self, path: Path, timeout: float = 60.0) -> float:
        """Navigate to a file:// URL; seconds until the page says its browsers are live."""
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.events.clear()
        t0 = time.perf_counter()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait("document.readyState === 'complete' && document.body && document.body.dataset.ready", timeout)
        return time.perf_counter() - t0

    def errors(self) -> list[dict]:
        """JavaScript exceptions and console errors since the page was opened."""
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")]

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                      "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                      "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Focus an input and type into it as a keyboard would (input events fire)."""
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a <select> (its popup is not drawn headless): set it, fire `change`."""
        self.js(f"(() => {{ const s = document.querySelector({json.dumps(selector)}); s.value = {json.dumps(value)}; "
                "s.dispatchEvent(new Event('change')); })()")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        self.sock.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


# ---- a small real run: scripted generation, real posing checks in the sandbox, real verifier and
# filters, then real evaluations (`selfplay eval`, scripted) on the procedural split and an
# out-of-distribution file

TOML = """
[run]
seed = 5
rounds = 2
out = "{out}"
[model]
backend = "scripted"
name = "scripted-model"
[seeds]
problems = 8
[pose]
attempts = 6
[solve]
samples = 4
mode = "mixed"  # reasoning in words and programs: pairs of both modes, program failures as rejected reasons
[train]
enabled = false
[eval]
enabled = false
"""
OOD = [{"question": "Add 12 and 30.", "answer": "42"}, {"question": "What do you get from 7 times 6?", "answer": "42"},
       {"question": "Take 4 away from 9. What is left?", "answer": "5"},
       {"question": "Sum of 3 and 8?", "answer": "11"}]


def sp(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed (posing runs programs in the sandbox)")
    tmp = tmp_path_factory.mktemp("report_html")
    (tmp / "c.toml").write_text(TOML.format(out=tmp / "run"))
    run_loop(load_config(tmp / "c.toml"))
    out = tmp / "run"
    io.write_jsonl(tmp / "ood_arith.jsonl", OOD)
    targets = (out / "eval_base.json", out / "round_0" / "eval.json", out / "round_1" / "eval.json")
    for seed, target in enumerate(targets):
        r = sp("eval", "--model", "scripted-model", "--backend", "scripted", "--heldout", 12, "--data",
               tmp / "ood_arith.jsonl", "--seed", seed, "-o", target)
        assert r.returncode == 0, r.stderr[-2000:]
    r = sp("report", "--out", out)
    assert r.returncode == 0 and (out / "report.html").exists(), r.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium not installed (scripts/setup.sh installs it)")
    b = CDP()
    yield b
    b.close()


def lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def md_tables(md: str) -> dict[str, list[list[str]]]:
    """report.md's tables by section title: rows of cells (header first)."""
    out = {}
    for part in md.split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in body.splitlines()
                if line.startswith("| ") and not line.startswith("|---")]
        if rows:
            out[title.strip()] = rows
    return out


def _plain(text: str) -> str:
    """A Markdown cell as the page shows its text: without `code` and **bold** marks."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text.replace("`", "")).replace("|", "/")


COUNT = "document.querySelector('#pair-browser').dataset.matching"
ARTICLE = ("(() => {{ const a = document.querySelector(\"{sel}\"); return {{"
           "q: a.querySelector('.question').textContent, gold: a.querySelector('.gold code').textContent, "
           "chosen: a.querySelector('.chosen-text').textContent, rejected: a.querySelector('.rejected-text')"
           ".textContent, heads: [...a.querySelectorAll('h4')].map(h => h.textContent), "
           "mark: (a.querySelector('mark.first-error') || {{}}).textContent}}; }})()")


@needs_chromium
def test_the_page_of_a_real_run_in_a_real_browser(run, browser, capsys):
    seconds = browser.open(run / "report.html")
    assert browser.js("document.body.dataset.ready") == "1" and not browser.errors(), browser.errors()
    rounds = {k: lines(run / f"round_{k}" / "pairs.jsonl") for k in (0, 1)}
    total = sum(map(len, rounds.values()))
    assert total >= 10 and len(rounds[1]) < total
    # every pair of the files, a page of them drawn
    assert browser.js(COUNT) == str(total)
    assert browser.js("document.querySelectorAll('#pair-browser article.pair').length") == min(50, total)
    # a filter narrows the rows: round 1, then round 1's most common rejected verdict reason
    browser.choose("#pf-round", "1")
    assert browser.js(COUNT) == str(len(rounds[1]))
    assert set(browser.js("[...document.querySelectorAll('article.pair')].map(a => a.dataset.round)")) == {"1"}
    why = {(r["problem_id"], r["sample_index"]): r["reason"] for r in lines(run / "round_1" / "rollouts.jsonl")}
    reasons = [why[(p["metadata"]["problem_id"], p["metadata"]["rejected_index"])] for p in rounds[1]]
    common = max(set(reasons), key=reasons.count)
    value = browser.js(f"[...document.querySelectorAll('#pf-reason option')].find(o => o.textContent.startsWith("
                       f"{json.dumps(common + ' (')})).value")
    browser.choose("#pf-reason", value)
    assert browser.js(COUNT) == str(reasons.count(common)) and reasons.count(common) < len(rounds[1])
    browser.choose("#pf-reason", "")
    modes = [p["metadata"]["mode"] for p in rounds[1]]
    browser.choose("#pf-mode", browser.js("[...document.querySelectorAll('#pf-mode option')].find(o => "
                                          "o.textContent.startsWith('pot (')).value"))
    assert browser.js(COUNT) == str(modes.count("pot")) and 0 < modes.count("pot") < len(modes)
    browser.choose("#pf-mode", "")
    # typed search: a problem id narrows to that problem's pairs (the search reads id, question, gold, paths)
    pair = next(p for p in rounds[1] if p["metadata"]["origin"] == "posed")
    pid = pair["metadata"]["problem_id"]
    browser.type("#pf-q", pid)
    want = [p for p in rounds[1] if pid.lower() in "\n".join(
        [p["metadata"]["problem_id"], p["metadata"]["question"], p["metadata"]["gold"], p["chosen"][0]["content"],
         p["rejected"][0]["content"]]).lower()]
    browser.wait(f"{COUNT} === '{len(want)}'")
    assert 0 < len(want) < len(rounds[1])
    # a pair's texts are the file's: question, gold, chosen and rejected side by side, extracted answers
    line = rounds[1].index(pair) + 1
    got = browser.js(ARTICLE.format(sel=f"article.pair[data-round='1'][data-line='{line}']"))
    md = pair["metadata"]
    assert got["q"] == md["question"] and got["gold"] == md["gold"]
    assert got["chosen"] == pair["chosen"][0]["content"] and got["rejected"] == pair["rejected"][0]["content"]
    assert got["heads"] == [f"chosen — extracted: {md['chosen_extracted']}",
                            f"rejected — extracted: {md['rejected_extracted']}"]
    browser.js("document.getElementById('pairs').scrollIntoView()")
    shot = browser.screenshot(SCREENSHOT)  # the pair browser, filtered to one posed problem's pairs
    # posed problems: every one of problems.jsonl; a click shows the pairs a problem gave
    posed = {k: [p for p in lines(run / f"round_{k}" / "problems.jsonl") if p["origin"] == "posed"] for k in (0, 1)}
    assert browser.js("document.querySelector('#posed-browser').dataset.matching") == str(sum(map(len, posed.values())))
    gave = next((k, p["id"]) for k in (0, 1) for p in posed[k]
                if any(x["metadata"]["problem_id"] == p["id"] for x in rounds[k]))
    browser.click(f"#posed-browser tr[data-round='{gave[0]}'][data-pid='{gave[1]}'] button")
    n = sum(x["metadata"]["problem_id"] == gave[1] for x in rounds[gave[0]])
    browser.wait(f"{COUNT} === '{n}'")
    assert browser.js("document.querySelector('#pf-q').value") == gave[1]
    # the page's tables and headline are report.md's
    text = (run / "report.md").read_text()
    tables = md_tables(text)
    page = browser.js("Object.fromEntries([...document.querySelectorAll('main > section')].filter(s => "
                      "s.querySelector('h2') && s.querySelector('table.report-table')).map(s => [s.querySelector('h2')"
                      ".textContent, [...s.querySelectorAll('table.report-table tr')].map(tr => [...tr.children]"
                      ".map(c => c.textContent))]))")
    assert {"Per round", "Held-out detail", "Held-out gain against the starting model (paired)", "Posed problems",
            "Filters (drops by reason)", "Reasons"} <= set(tables)
    assert {title: [[_plain(c) for c in row] for row in rows] for title, rows in tables.items()} == page
    headline = browser.js("document.querySelector('p.headline').textContent")
    assert headline == _plain(text.split("\n\n")[1]) and "out-of-distribution" in headline
    assert browser.js("document.querySelectorAll('img.plot').length") == len(re.findall(r"!\[", text)) >= 2
    assert not browser.errors(), browser.errors()
    with capsys.disabled():
        print(f"\nreport.html of a real run: opened in {seconds:.2f} s; screenshot: {shot}")


@needs_chromium
def test_the_dropped_paths_have_examples_of_each_reason(run, browser):
    browser.open(run / "report.html")
    rows = browser.js("[...document.querySelectorAll('table.drops tbody tr')].map(tr => [tr.closest('table')"
                      ".dataset.round, ...[...tr.children].slice(0, 4).map(c => c.textContent), "
                      "tr.querySelectorAll('details.example').length])")
    counts = {(str(k), f, a): n for k in (0, 1) for f, c in io.read_json(run / f"round_{k}" / "filters.json").items()
              if isinstance(c, dict) and not f.endswith(("_info", "_precision"))
              for a, n in c.items() if isinstance(n, int) and n and a not in ("posed", "agree")}
    assert {(r[0], r[1], r[2]): int(r[4]) for r in rows} == counts  # every drop reason, with its count
    assert all(r[3] and "not described" not in r[3] for r in rows)  # and what it means
    assert sum(r[5] > 0 for r in rows) >= len(rows) // 2 and all(r[5] <= 3 for r in rows)


@needs_chromium
def test_report_regenerates_the_page_of_an_older_run(run, browser, tmp_path):
    """A run made before report.html (and before eval kinds, first errors and step counts): `selfplay
    report` writes a page that opens and says what the run did not measure."""
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for f in ("report.html", "report.md"):
        (old / f).unlink()
    for k in (0, 1):
        pairs = lines(old / f"round_{k}" / "pairs.jsonl")
        for p in pairs:
            for key in ("first_error", "step_check"):
                p["metadata"].pop(key, None)
        io.write_jsonl(old / f"round_{k}" / "pairs.jsonl", pairs)
    for f in (old / "eval_base.json", old / "round_0" / "eval.json", old / "round_1" / "eval.json"):
        ev = io.read_json(f)
        ev["sets"] = {"heldout_procedural": {k: v for k, v in ev["sets"]["heldout_procedural"].items() if k != "kind"}}
        io.write_json(f, ev)
    r = sp("report", "--out", old)
    assert r.returncode == 0, r.stderr[-2000:]
    browser.open(old / "report.html")
    assert browser.js("document.body.dataset.ready") == "1" and not browser.errors(), browser.errors()
    n = sum(len(lines(old / f"round_{k}" / "pairs.jsonl")) for k in (0, 1))
    assert browser.js(COUNT) == str(n) and browser.js("document.querySelectorAll('mark.first-error').length") == 0
    headline = browser.js("document.querySelector('p.headline').textContent")
    assert "out-of-distribution: not evaluated in this run" in headline


@needs_chromium
def test_the_first_false_statement_is_marked(tmp_path, browser):
    """The step checker's first error of a rejected path (offsets in code points, as Python counts)
    is highlighted exactly, even after characters JavaScript counts twice (UTF-16)."""
    from selfplay.pair.process import first_error
    from selfplay_verifiers.steps import check_steps

    rejected = "🍎🍎 Tom has 2 + 3 = 6 apples, and 6 + 1 = 7. The answer is \\boxed{7}."
    fe = first_error(check_steps(rejected))
    assert fe is not None and fe["statement"] == "2 + 3 = 6"
    out = tmp_path / "run"
    io.write_json(out / "round_0" / "stats.json", {"problems": 1, "samples": 2, "pairs": 1})
    io.write_jsonl(out / "round_0" / "pairs.jsonl", [{
        "prompt": [{"role": "user", "content": "Problem: Tom has 2 apples and gets 3 more. How many?"}],
        "chosen": [{"role": "assistant", "content": "2 + 3 = 5. The answer is \\boxed{5}."}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "metadata": {"problem_id": "p0", "origin": "procedural", "gold": "5", "chosen_extracted": "5",
                     "question": "Tom has 2 apples and gets 3 more. How many?",
                     "rejected_extracted": "7", "rejected_index": 1, "mode": "cot",
                     "first_error": fe, "step_check": {"chosen": {"true": 1, "false": 0, "unknown": 0},
                                                       "rejected": {"true": 1, "false": 1, "unknown": 0}}}}])
    write_report(out)
    browser.open(out / "report.html")
    got = browser.js(ARTICLE.format(sel="article.pair"))
    assert got["rejected"] == rejected and got["mark"] == "2 + 3 = 6"
    assert "chosen 1/0/0, rejected 1/1/0" in browser.js("document.querySelector('article.pair .steps').textContent")



# ---- size: a run of 100,000 pairs still opens

NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Zoe", "Raj", "Eva"]
THINGS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards"]


def _path(r, a, b, ans):
    """A short reasoning path in the shape the embedded model writes them (about 100-200 characters)."""
    n, t = r.choice(NAMES), r.choice(THINGS)
    text = r.choice([f"{n} has {a} {t} and gets {b} more, so {a} + {b} = {ans}.", f"We add the two numbers: "
                     f"{a} + {b} = {ans}.", f"Step 1: {a} + {b} = {ans}.\nStep 2: check it: {ans} - {b} = {a}."])
    if r.random() < 0.3:
        text += f"\n{n} now has {ans} {t}. " + r.choice(["That is all.", "So we are done.", "Let me check: yes."])
    return text + f" The answer is \\boxed{{{ans}}}."


def synthetic_run(out: Path, n_pairs: int, rounds: int = 4, per_problem: int = 4, seed: int = 0) -> None:
    """A run directory of `n_pairs` pairs: per problem 2 correct and 4 incorrect paths, 4 pairs."""
    import random

    r = random.Random(seed)
    for k in range(rounds):
        probs, rolls, pairs = [], [], []
        for i in range(n_pairs // rounds // per_problem):
            a, b = r.randint(1, 999), r.randint(1, 999)
            origin = "posed" if i % 2 else "procedural"
            pid = f"posed-r{k}-{i:05d}" if i % 2 else f"train-add-L3-{i:06d}"
            q = f"What is {a} + {b}?" if i % 3 else \
                f"{r.choice(NAMES)} has {a} {r.choice(THINGS)} and gets {b} more. How many?"
            probs.append({"id": pid, "question": q, "answer": str(a + b), "origin": origin, "source": "add", "level": 3,
                          "program": f"print({a} + {b})" if i % 2 else None,
                          "meta": {"level": 0, "kind": "fewshot", "steps": 1, "expression_witness": {
                              "expression": f"{a} + {b}", "value": str(a + b), "agree": True}}})
            paths = []
            for j in range(2 + per_problem):
                ans = a + b if j < 2 else a + b + j
                paths.append((_path(r, a, b, ans), str(ans)))
                rolls.append({"problem_id": pid, "sample_index": j, "completion": paths[-1][0], "finish_reason": "stop",
                              "n_tokens": 40, "seed": j, "label": "correct" if j < 2 else "incorrect",
                              "reason": "ok" if j < 2 else "wrong", "extracted": str(ans), "logprob_mean": -0.4})
            for m in range(per_problem):
                (c, ce), (w, we) = paths[m % 2], paths[2 + m]
                pairs.append({"prompt": [{"role": "user", "content": f"Problem: {q}\nSolution:"}],
                              "chosen": [{"role": "assistant", "content": c}],
                              "rejected": [{"role": "assistant", "content": w}],
                              "metadata": {"problem_id": pid, "origin": origin, "level": 3, "gold": str(a + b),
                                           "question": q, "chosen_extracted": ce, "rejected_extracted": we,
                                           "rejected_index": 2 + m, "pass_rate": 1 / 3, "round": k, "mode": "cot"}})
        d = out / f"round_{k}"
        d.mkdir(parents=True)
        for name, rows in (("problems.jsonl", probs), ("rollouts.jsonl", rolls), ("pairs.jsonl", pairs)):
            (d / name).write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in rows))
        io.write_json(d / "stats.json", {"round": k, "problems": len(probs), "samples": len(rolls), "pairs": len(pairs),
                                         "correct": len(rolls) // 3, "incorrect": 2 * len(rolls) // 3, "unknown": 0})


@needs_chromium
def test_a_run_of_100k_pairs_opens_and_pages(tmp_path, browser, capsys):
    """The data is embedded gzip-compressed (base64) and decoded by the browser: measured here against
    the same data as plain JSON, on the same 100,000 pairs."""
    out = tmp_path / "big"
    synthetic_run(out, 100_000)
    t0 = time.perf_counter()
    write_report(out)
    written = time.perf_counter() - t0
    page = (out / "report.html").read_text()
    m = re.search(r'(<script type="application/octet-stream" id="selfplay-data" data-encoding=")gzip\+base64(">)'
                  r"([^<]*)(</script>)", page)
    raw = gzip.decompress(base64.b64decode(m.group(3)))
    assert len(orjson.loads(raw)["pairs"]) == 100_000
    plain = out / "plain.html"  # the same page with the data as plain JSON
    plain.write_text(page[:m.start()] + m.group(1) + "json" + m.group(2) + raw.decode().replace("<", "\\u003c")
                     + m.group(4) + page[m.end():])
    sizes = {"gzip": (out / "report.html").stat().st_size, "json": plain.stat().st_size}
    opened = {}
    for name, path in (("gzip", out / "report.html"), ("json", plain)):
        opened[name] = browser.open(path)
        assert browser.js(COUNT) == "100000" and not browser.errors(), browser.errors()
        count = browser.js("document.querySelector('#pair-browser .count').textContent")
        assert count.startswith("1-50 of 100000 pairs")
    browser.click("#pair-browser .next")  # a real click on the next page
    assert browser.js("document.querySelector('#pair-browser .count').textContent").startswith("51-100 of 100000 pairs")
    assert browser.js("document.querySelectorAll('#pair-browser article.pair').length") == 50
    t0 = time.perf_counter()
    browser.type("#pf-q", "posed-r2-00001")
    browser.wait(f"{COUNT} !== '100000'")
    searched = time.perf_counter() - t0
    assert browser.js(COUNT) == "4"  # that problem's 4 pairs
    with capsys.disabled():
        print(f"\nreport.html of 100,000 pairs: written in {written:.1f} s; gzip+base64 {sizes['gzip'] / 1e6:.1f} MB, "
              f"ready in {opened['gzip']:.2f} s; plain JSON {sizes['json'] / 1e6:.1f} MB, "
              f"ready in {opened['json']:.2f} s; "
              f"a search over all pairs {searched:.2f} s (0.15 s of it the typing pause the page waits for)")
    assert sizes["gzip"] * 3 < sizes["json"] and sizes["gzip"] < 15e6
    assert opened["gzip"] < 30
