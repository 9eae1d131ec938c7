"""Prompts (vocabulary, token encoder, prompt loss and guidance), two-digit images, retrieval."""

from __future__ import annotations

import itertools

import pytest
import torch

from minidiff import linear_schedule
from minidiff.data import load_digits
from minidiff.data.digit_pairs import compose_pairs, pair_prompt, pair_vocabulary, split_pair
from minidiff.nn import UNet
from minidiff.nn.text import (
    PromptUNet,
    TokenEncoder,
    Vocabulary,
    prompt_eps_loss,
    prompt_guidance,
)
from minidiff.retrieval import NeighbourRetriever


def test_vocabulary_round_trip_and_padding() -> None:
    vocab = Vocabulary(["3", "left", "of", "7"])
    ids = vocab(["3 left of 7", "7"], length=5)
    assert ids.tolist() == [[1, 2, 3, 4, 0], [4, 0, 0, 0, 0]]
    assert vocab.decode(ids) == ["3 left of 7", "7"]
    assert len(vocab) == 5


@pytest.mark.parametrize(
    ("prompt", "length", "words"),
    [
        ("3 above 7", 4, "unknown word(s) ['above']"),
        ("3 left of 7 7", 4, "more than length=4"),
        ("<pad>", 4, "unknown"),
    ],
)
def test_unknown_words_and_long_prompts_are_named(prompt: str, length: int, words: str) -> None:
    with pytest.raises(ValueError) as info:
        pair_vocabulary()(prompt, length)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("prompts", "length", "error", "words"),
    [
        (["3"], "4", TypeError, "length must be an int >= 1, got str '4'"),
        (["3"], 2.0, TypeError, "length must be an int >= 1"),
        (["3"], 0, ValueError, "length must be >= 1, got 0"),
        (5, 3, TypeError, "prompts must be a str or a sequence of str"),
        (["3", 7], 3, TypeError, "prompts must be a str or a sequence of str (words separated by"),
        (["3", None], 3, TypeError, "prompts must be a str or a sequence of str"),
        ([], 3, ValueError, "prompts must hold at least one prompt"),
    ],
)
def test_vocabulary_names_a_bad_length_or_prompts_with_the_policy_s_error(
    prompts: object, length: object, error: type, words: str
) -> None:
    """The wrong kind of length or prompts is a TypeError, as ``encode`` says for ``length``."""
    vocab = Vocabulary(["3", "left", "of", "7"])
    with pytest.raises(error) as info:
        vocab(prompts, length)  # type: ignore[arg-type]
    assert str(info.value).startswith(words)
    if prompts == ["3"] and error is TypeError:  # encode says the same of the same length
        with pytest.raises(TypeError, match="^length must be an int >= 1"):
            vocab.encode("3", length)  # type: ignore[arg-type]


def test_mean_pooling_forgets_word_order_and_cross_attention_inputs_keep_it() -> None:
    torch.manual_seed(0)
    vocab = pair_vocabulary()
    ids = vocab(["3 left of 7", "7 left of 3"], 4)
    seq, pooled = TokenEncoder(len(vocab), 8, 4), TokenEncoder(len(vocab), 8, 4, pool=True)
    pooled.load_state_dict(seq.state_dict())
    p = pooled(ids)
    assert p.shape == (2, 1, 8)
    torch.testing.assert_close(p[0], p[1])  # the same vector for opposite pictures
    s = seq(ids)
    assert s.shape == (2, 4, 8) and (s[0] - s[1]).abs().max() > 0.1
    # every permutation of the words pools to the same vector
    for perm in itertools.permutations(range(4)):
        torch.testing.assert_close(pooled(ids[:1, list(perm)]), p[:1])


@pytest.mark.parametrize(
    ("ids", "error", "words"),
    [
        (torch.tensor([[1, 2, 3, 14]]), ValueError, "unknown token id 14"),
        (torch.tensor([[-1, 2, 3, 4]]), ValueError, "unknown token id -1"),
        (torch.tensor([1, 2, 3, 4]), ValueError, "(B, L)"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "integer token ids"),
        (torch.zeros(1, 5, dtype=torch.long), ValueError, "max_length=4"),
    ],
)
def test_bad_token_ids_are_named(ids: torch.Tensor, error: type, words: str) -> None:
    enc = TokenEncoder(len(pair_vocabulary()), 8, 4)
    with pytest.raises(error) as info:
        enc(ids)
    assert words in str(info.value)


def _prompt_model(pool: bool = False) -> PromptUNet:
    torch.manual_seed(0)
    unet = UNet("tiny", image_size=16, attn_resolutions=(8,), context_dim=8, heads=2)
    with torch.no_grad():  # leave the zero init, so that the prompt matters
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return PromptUNet(TokenEncoder(len(pair_vocabulary()), 8, 4, pool=pool), unet).eval()


def test_prompt_loss_replays_its_random_numbers_and_drops_prompts() -> None:
    model = _prompt_model()
    x, ids, _, _ = compose_pairs(*load_digits(8), 8, torch.Generator().manual_seed(0))
    sched = linear_schedule(100)
    loss = prompt_eps_loss(
        model, x, ids, sched, p_uncond=0.5, generator=torch.Generator().manual_seed(1)
    )
    g = torch.Generator().manual_seed(1)
    t = torch.randint(1, 101, (8,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    drop = torch.rand(8, generator=g) < 0.5
    ids_in = torch.where(drop[:, None], torch.zeros_like(ids), ids)
    ab = sched.alpha_bar[t].float()[:, None, None, None]
    x_t = ab.sqrt() * x + (1 - ab).sqrt() * noise
    with torch.no_grad():
        expected = ((noise - model(x_t, t, ids_in)) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected)
    assert 0 < int(drop.sum()) < 8


def test_prompt_loss_refuses_x0_of_another_dtype_than_the_model_before_drawing() -> None:
    """A float32 x0 for a float64 model: a TypeError naming x0 before t and eps are drawn (it
    failed inside the U-Net, naming its x)."""
    model = _prompt_model().double()
    x, ids, _, _ = compose_pairs(*load_digits(8), 4, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    with pytest.raises(
        TypeError, match=r"^x0 has dtype torch.float32 .* weights are torch.float64"
    ):
        prompt_eps_loss(model, x.float(), ids, linear_schedule(100), generator=g)
    assert torch.equal(g.get_state(), state)  # nothing drawn
    loss = prompt_eps_loss(model, x.double(), ids, linear_schedule(100), generator=g)
    assert loss.dtype == torch.float64


def test_prompt_guidance_is_cfg_with_the_null_prompt() -> None:
    model = _prompt_model()
    ids = pair_vocabulary()(["3 left of 7", "1 left of 2"], 4)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 500])
    with torch.no_grad():
        e = prompt_guidance(model, ids, 2.0)(x, t)
        c, u = model(x, t, ids), model(x, t, torch.zeros_like(ids))
        torch.testing.assert_close(e, 3.0 * c - 2.0 * u, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(prompt_guidance(model, ids, 0.0)(x, t), c)
    with pytest.raises(ValueError, match="2 prompts for a batch of 3"):
        prompt_guidance(model, ids, 1.0)(torch.randn(3, 1, 16, 16), torch.tensor([1, 2, 3]))


def test_prompt_unet_needs_matching_widths() -> None:
    with pytest.raises(ValueError, match="context_dim"):
        PromptUNet(TokenEncoder(5, 8, 4), UNet("tiny", context_dim=6))


def test_pairs_put_each_digit_on_its_side_of_the_prompt() -> None:
    images, labels = load_digits(8)
    canvas, ids, left, right = compose_pairs(images, labels, 50, torch.Generator().manual_seed(0))
    assert canvas.shape == (50, 1, 16, 16) and ids.shape == (50, 4)
    assert (canvas[:, :, :4] == -1).all() and (canvas[:, :, 12:] == -1).all()
    a, b = split_pair(canvas)
    words = pair_vocabulary().decode(ids)
    for k in range(50):
        # each half is a real digit image of the label it claims
        assert any(torch.equal(a[k], img) for img in images[labels == left[k]])
        assert any(torch.equal(b[k], img) for img in images[labels == right[k]])
        first, rel, _, second = words[k].split()
        assert (int(first), int(second)) == (
            (int(left[k]), int(right[k])) if rel == "left" else (int(right[k]), int(left[k]))
        )
    assert pair_prompt(3, 7) == "3 left of 7" and pair_prompt(3, 7, "right") == "7 right of 3"
    _, ids_left, _, _ = compose_pairs(images, labels, 20, relations=("left",))
    assert set(ids_left[:, 1].tolist()) == {pair_vocabulary().ids["left"]}


def test_retriever_finds_neighbours_in_pca_space() -> None:
    images, _ = load_digits(8)
    db = images[:300]
    ret = NeighbourRetriever.fit(db, dim=16, k=3)
    emb = ret.embed(db)
    torch.testing.assert_close(emb, ret.database, atol=1e-4, rtol=1e-4)
    # PCA coordinates are uncorrelated with decreasing variance
    var = emb.var(0)
    assert (var[:-1] >= var[1:] - 1e-4).all()
    idx = ret.neighbours(emb[:10])
    assert (idx[:, 0] == torch.arange(10)).all()  # each point is its own nearest neighbour
    idx_ex = ret.neighbours(emb[:10], exclude=torch.arange(10))
    assert (idx_ex != torch.arange(10)[:, None]).all()
    d = ((emb[:10, None] - ret.database[None]) ** 2).sum(-1)
    d[torch.arange(10), torch.arange(10)] = float("inf")
    assert torch.equal(idx_ex[:, 0], d.argmin(1))
    assert ret.context(emb[:10], torch.arange(10)).shape == (10, 3, 16)
    with pytest.raises(ValueError, match="pixels"):
        ret.embed(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="k must be smaller"):
        NeighbourRetriever.fit(db[:3], dim=2, k=3)


def test_retriever_refuses_bad_exclude_and_non_finite_input() -> None:
    db = torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ret = NeighbourRetriever.fit(db, dim=4, k=3)
    q = ret.embed(db[:2])
    # -1 used to exclude entry 19 and give the query back; 4.7 was truncated to 4
    with pytest.raises(ValueError, match=r"exclude must hold database indices in 0\.\.19"):
        ret.neighbours(q, exclude=torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="exclude"):
        ret.neighbours(q, exclude=torch.tensor([99, 1]))
    with pytest.raises(TypeError, match="exclude"):
        ret.neighbours(q, exclude=torch.tensor([4.7, 1.0]))
    for bad in (0, [0, 1]):
        with pytest.raises(TypeError, match="exclude"):
            ret.neighbours(q, exclude=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queries"):
        ret.neighbours(torch.full_like(q, float("nan")))
    with pytest.raises(ValueError, match="images"):
        ret.embed(torch.full_like(db[:2], float("nan")))
    assert (ret.neighbours(q, exclude=torch.tensor([0, 1])) != torch.arange(2)[:, None]).all()


def test_retriever_checks_k_before_the_svd(monkeypatch: pytest.MonkeyPatch) -> None:
    # k was checked only after the SVD (1.8 s on 3000 images before k=3.0 was refused)
    def no_svd(*args: object, **kwargs: object) -> None:
        raise AssertionError("the SVD ran before k was checked")

    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    db = torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="k"):
        NeighbourRetriever.fit(db, dim=4, k=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be smaller than the database"):
        NeighbourRetriever.fit(db, dim=4, k=20)
