"""The real hf backend on the real embedded model (SmolLM2-135M-Instruct, CPU)."""
import pytest

from selfplay.backends import get_backend
from selfplay.backends.base import SamplingParams
from selfplay.prompts import solve_messages

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend():
    b = get_backend("hf", "default", batch_size=16)
    yield b
    b.close()


def test_per_sample_seeds_make_samples_reproducible_alone(backend):
    qs = [solve_messages("What is 4 + 5?"), solve_messages("What is 7 - 2?")]
    p = SamplingParams(n=4, temperature=0.8, top_p=0.95, max_new_tokens=40, with_logprobs=True)
    seeds = [[11, 12, 13, 14], [21, 22, 23, 24]]
    out = backend.generate(qs, p, seeds)
    assert [len(r) for r in out] == [4, 4]
    assert len({c.text for c in out[0]}) > 1  # different seeds, different paths
    alone = backend.generate([qs[1]], SamplingParams(n=1, temperature=0.8, top_p=0.95, max_new_tokens=40,
                                                     with_logprobs=True), [[23]])
    assert alone[0][0].text == out[1][2].text  # batch composition does not change a sample
    c = out[0][0]
    assert c.seed == 11 and c.n_tokens > 0 and c.finish_reason in ("stop", "length")
    assert c.logprob_mean is not None and c.logprob_mean < 0


def test_greedy_and_length_finish(backend):
    p = SamplingParams(n=2, temperature=0.0, max_new_tokens=8)
    out = backend.generate([solve_messages("What is 1 + 1?")], p, [[1, 2]])
    assert out[0][0].text == out[0][1].text and out[0][0].finish_reason == "length"
    assert out[0][0].n_tokens == 8


def test_stop_string(backend):
    p = SamplingParams(n=1, temperature=0.0, max_new_tokens=64, stop=("=",))
    text = backend.generate([solve_messages("What is 12 + 7?")], p, [[0]])[0][0]
    assert text.finish_reason == "stop" and text.text.count("=") <= 1
