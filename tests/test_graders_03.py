"""Chapter 03's graders, notebook, reference circuit and GPT-2 loading, end to end.

The wrong implementations are the solution notebook's own cells (generated from
`solutions/ioi.py`) with one realistic mistake edited in.
"""


import pytest
import torch
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases

from graders.chapter_03 import CHAPTER as CHAPTER  # the chapter the shared tests grade
from graders.chapter_03 import ORACLES_HEADS, ORACLES_LAYER_POS, cache_of, reference_circuit, setup
from solutions import ioi as reference
from toy_models import load_pretrained
from toy_models.data import make_ioi_prompts

NOTEBOOK = "03_indirect_object_identification.ipynb"


CIRCUIT = '{"name_mover": [(0, 0), (0, 1), (0, 3)], "s_suppression": [(1, 0), (1, 3)]}'
ROW = "final[batch, prompts.io_tokens] - final[batch, prompts.s_tokens]"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    # mean_logit_diff: inputs: random logits, and prompts whose end_pos is not the last position (a padded batch)
    ("mean_logit_diff", [("logits[batch, prompts.end_pos]", "logits[:, -1]")], "wrong position"),
    ("mean_logit_diff", [(ROW, "final[batch, prompts.s_tokens] - final[batch, prompts.io_tokens]")], "wrong sign"),
    ("mean_logit_diff", [(f"({ROW}).mean()", f"({ROW})")], "one value per prompt"),
    # normalised_logit_diff: inputs: baselines around the logit difference LD, on both sides of it (the metric below 0 too)
    ("normalised_logit_diff", [("return (mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff)",
                                "return mean_logit_diff(logits, prompts)")], "not normalised"),
    ("normalised_logit_diff", [("return (mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff)",
                                "return mean_logit_diff(logits, prompts) / clean_logit_diff")], "divided by clean_logit_diff only"),
    ("normalised_logit_diff", [("return (mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff)",
                                "return (clean_logit_diff - mean_logit_diff(logits, prompts)) / (clean_logit_diff - corrupted_logit_diff)")],
     "reversed"),
    # separated by clean_logit_diff = LD + 3, corrupted_logit_diff = LD + 0.5: the metric is -0.2 there
    ("normalised_logit_diff", [("return (mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff)",
                                "return ((mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff)).abs()")],
     "absolute value"),
    # residual_logit_diff: inputs: the accumulated stream, and random components with a non-zero mean over d_model
    ("residual_logit_diff", [("centred = stack - stack.mean(dim=-1, keepdim=True)", "centred = stack")], "did not centre"),
    ("residual_logit_diff", [("centred / scale * model.ln_final.w", "centred * model.ln_final.w")], "scale"),
    ("residual_logit_diff", [("centred / scale * model.ln_final.w", "centred / scale")], "ln_final.w"),
    ("residual_logit_diff", [("return per_prompt.mean(dim=-1)", "return per_prompt")], "one number per component"),
    # patch_residual_by_position: inputs: abc and flip corruptions, on ioi-3l and a random model, each of resid_pre, attn_out, mlp_out
    ("patch_residual_by_position", [("act[:, position] = corrupted[hook.name][:, position]", "act[position] = corrupted[hook.name][position]")],
     "wrong position"),
    ("patch_residual_by_position", [("act[:, position] = corrupted[hook.name][:, position]", "act[:, position:] = corrupted[hook.name][:, position:]")],
     "wrong position"),
    ("patch_residual_by_position", [("model.run_with_cache(corrupted_tokens,", "model.run_with_cache(clean_tokens,"),
                                    ("model.run_with_hooks(clean_tokens,", "model.run_with_hooks(corrupted_tokens,")], "wrong direction"),
    # patch_head_outputs: inputs: z, pattern (head axis second) and v, on ioi-3l and a random model
    ("patch_head_outputs", [("model.run_with_cache(corrupted_tokens,", "model.run_with_cache(clean_tokens,"),
                            ("model.run_with_hooks(clean_tokens,", "model.run_with_hooks(corrupted_tokens,")], "wrong direction"),
    ("patch_head_outputs", [("act[:, :, head] = corrupted[hook.name][:, :, head]", "act[:, -1:, head] = corrupted[hook.name][:, -1:, head]")],
     "wrong position"),
    ("patch_head_outputs", [("act[:, head] = corrupted[hook.name][:, head]", "act[:, :, head] = corrupted[hook.name][:, :, head]")],
     "wrong axis"),
    # path_patch_head_to_logits: inputs: ioi-3l and a random 3-layer model, where later layers read the heads (total != direct effect)
    ("path_patch_head_to_logits", [("z_change = corrupted[\"z\", layer][:, :, head] - clean[\"z\", layer][:, :, head]",
                                    "z_change = clean[\"z\", layer][:, :, head] - corrupted[\"z\", layer][:, :, head]")], "wrong sign"),
    ("path_patch_head_to_logits", [("return resid + change", "return resid"),
                                   ("fwd_hooks=[(final, add_change)]", "fwd_hooks=[(f\"blocks.{layer}.attn.hook_z\", lambda z, hook, head=head: "
                                    "torch.cat([z[:, :, :head], corrupted[hook.name][:, :, head:head + 1], z[:, :, head + 1:]], dim=2))]")],
     "activation patching"),
    # path_patch_head_to_heads: inputs: receivers in one layer (ioi-3l) and in two, the higher listed first (random); q, k, v
    ("path_patch_head_to_heads", [("z = clean[hook.name].clone()", "z = z")], "did not freeze"),
    ("path_patch_head_to_heads", [("act[:, :, head] = recorded[hook.name][:, :, head]", "act[:] = recorded[hook.name]")],
     "patched every head"),
    # separated by receivers [(2, 1), (1, 0)] on the random model: two layers, the higher listed first
    ("path_patch_head_to_heads", [('receiver_names = sorted({f"blocks.{layer}.attn.hook_{receiver_input}" for layer, _ in receivers})',
                                   'receiver_names = [f"blocks.{receivers[0][0]}.attn.hook_{receiver_input}"]')],
     "only the receivers in layer 2"),
    ("path_patch_head_to_heads", [("first_receiver_layer = min(layer for layer, _ in receivers)",
                                   "first_receiver_layer = receivers[0][0]")], "*lowest* receiver layer"),
    # attribution_patch_heads: inputs: ioi-3l and a random model, whose gradients differ between the clean and corrupted runs
    ("attribution_patch_heads", [("change = corrupted[name] - clean_z[name].detach()", "change = clean_z[name].detach() - corrupted[name]")],
     "wrong direction"),
    ("attribution_patch_heads", [('"batch pos head d_head, batch pos head d_head -> head")',
                                  '"batch pos head d_head, batch pos head d_head -> head") * 0 + einops.einsum(change[:, -1:], '
                                  'clean_z[name].grad[:, -1:], "batch pos head d_head, batch pos head d_head -> head")')],
     "wrong position"),
    ("attribution_patch_heads", [("return value.detach() + torch.stack(estimates)", "return torch.stack(estimates)")],
     "estimated *change*"),
    # ablated_logit_diff: inputs: two heads, every other head, and none; means over ABC prompts of another seed
    ("ablated_logit_diff", [("z[:, :, head] = reference[hook.name][:, :, head].mean(dim=0)", "z[:, :, head] = 0.0")], "zero-ablated"),
    ("ablated_logit_diff", [(".mean(dim=0)", ".mean(dim=(0, 1))")], "the batch *and the positions*"),
    ("ablated_logit_diff", [("model.run_with_cache(mean_tokens,", "model.run_with_cache(prompts.tokens,")], "over the prompts themselves"),
    # ioi_circuit: measured from the shipped model (reference_circuit)
    ("ioi_circuit", [(CIRCUIT, '{"name_mover": [(0, 0), (0, 1), (0, 3)], "s_suppression": [(1, 0), (1, 3), (2, 3)]}')],
     "attention is not use"),
    ("ioi_circuit", [(CIRCUIT, '{"name_mover": [(0, 0), (0, 1), (0, 3)], "s_suppression": [(1, 0)]}')], "Missing [(1, 3)]"),
    ("ioi_circuit", [(CIRCUIT, '{"name_mover": [(1, 0)], "s_inhibition": [(0, 0)]}')], "GPT-2's taxonomy"),
    ("ioi_circuit", [(CIRCUIT, "[(0, 0), (1, 0), (1, 3)]")], "should return a dict"),
]

ALSO_RIGHT = [
    ("mean_logit_diff", [("return (final[batch, prompts.io_tokens] - final[batch, prompts.s_tokens]).mean()",
                          "return (final.gather(-1, prompts.io_tokens[:, None]) - final.gather(-1, prompts.s_tokens[:, None])).mean().item()")]),
    ("ioi_circuit", [(CIRCUIT, '{"Name movers": ["0.0", "L0H1", [0, 3]], "S-suppression heads": ["1.0", "1.3"]}')]),
    # heads read off a table: rows of .nonzero() (torch integers) and of their numpy array (numpy integers)
    ("ioi_circuit", [(CIRCUIT, '{"name_mover": torch.tensor([[1, 1, 0, 1]]).nonzero(), '
                               '"s_suppression": torch.tensor([[0, 0, 0, 0], [1, 0, 0, 1]]).nonzero().numpy()}')]),
    # a numpy float32 scalar
    ("mean_logit_diff", [(f"({ROW}).mean()", f"({ROW}).numpy().mean()")]),
    # the mean over mean_tokens' prompts taken with keepdim and broadcast
    ("ablated_logit_diff", [("reference[hook.name][:, :, head].mean(dim=0)", "reference[hook.name][:, :, head].mean(dim=0, keepdim=True)")]),
]


# --------------------------------------------------------------------------- the references against transformer_lens.patching

@pytest.mark.parametrize("exercise, oracles", [("patch_residual_by_position", ORACLES_LAYER_POS),
                                               ("patch_head_outputs", ORACLES_HEADS)])
def test_the_patching_references_agree_with_transformer_lens(exercise, oracles):
    """The graders compare a learner's patching with the reference alone: here the reference
    meets TransformerLens's own patching, on every variant the graders run."""
    for variant in CHAPTER.exercises[exercise].variants:
        settings = {**CHAPTER.exercises[exercise].settings, **variant}
        activation = settings["activation"]
        net, clean, corrupted, metric = setup(settings["model"], settings["seed"], settings["corruption"])
        mine = getattr(reference, exercise)(net, clean.tokens, corrupted.tokens, metric, activation)
        with torch.no_grad():
            theirs = oracles[activation](net, clean.tokens, cache_of(net, corrupted.tokens, f"hook_{activation}"), metric)
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4, msg=f"{exercise} {variant}")


# --------------------------------------------------------------------------- the reference circuit

def test_the_reference_circuit_is_measured_from_the_shipped_model():
    assert reference_circuit() == {"name_mover": {(0, 0), (0, 1), (0, 3)}, "s_suppression": {(1, 0), (1, 3)}}
    assert {role: set(heads) for role, heads in reference.ioi_circuit().items()} == reference_circuit()


@pytest.mark.parametrize("split, seed", [("train", 7), ("test", 8)])
def test_the_reference_circuit_is_faithful_and_necessary(split, seed):
    """The issue's thresholds, recomputed from the shipped weights: mean-ablating every head
    outside the circuit keeps >= 80% of the logit difference; removing the circuit leaves < 20%."""
    model = load_pretrained("ioi-3l").eval()
    prompts = make_ioi_prompts(200, split=split, seed=seed)
    mean_tokens = make_ioi_prompts(200, split=split, seed=seed + 100).corrupt("abc").tokens
    circuit = sorted(head for heads in reference_circuit().values() for head in heads)
    outside = [(layer, head) for layer in range(3) for head in range(4) if (layer, head) not in circuit]
    full = reference.ablated_logit_diff(model, prompts, mean_tokens, [])
    assert reference.ablated_logit_diff(model, prompts, mean_tokens, outside) / full >= 0.8
    assert reference.ablated_logit_diff(model, prompts, mean_tokens, circuit) / full < 0.2
    # minimality on the logit difference: each S-suppression head matters on its own
    for head in reference_circuit()["s_suppression"]:
        assert reference.ablated_logit_diff(model, prompts, mean_tokens, outside + [head]) / full < 0.6


# --------------------------------------------------------------------------- GPT-2 through TransformerBridge, offline

def small_random_gpt2():
    """A randomly initialised 2-layer GPT2LMHeadModel and a word-level tokenizer built here."""
    import tempfile

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from toy_models.data import ioi_tokenizer

    vocab = {word: i for i, word in enumerate(ioi_tokenizer().words)}
    vocab["<|endoftext|>"] = len(vocab)
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<bos>"))
    word_level.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<bos>")
    with tempfile.TemporaryDirectory() as directory:  # reloaded with add_bos_token, as the bridge expects
        tokenizer.save_pretrained(directory)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(directory, add_bos_token=True)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=len(vocab))
    return GPT2LMHeadModel(config).eval(), tokenizer


def test_gpt2_loading_runs_the_chapter_functions_on_a_small_random_gpt2():
    from toy_models.hf import ioi_prompts_for_tokenizer, load_gpt2_bridge

    hf_model, tokenizer = small_random_gpt2()
    bridge = load_gpt2_bridge("gpt2", hf_model=hf_model, tokenizer=tokenizer)
    assert bridge is not None
    prompts = ioi_prompts_for_tokenizer(bridge.tokenizer, 8, seed=0)
    assert len(prompts) == 8 and (prompts.tokens[:, 0] == tokenizer.bos_token_id).all()
    batch = torch.arange(8)
    assert (prompts.tokens[batch, prompts.io_pos] == prompts.io_tokens).all()
    assert (prompts.tokens[batch, prompts.s2_pos] == prompts.s_tokens).all()
    with torch.no_grad():
        bridge_logits = bridge(prompts.tokens)
        hf_logits = hf_model(prompts.tokens).logits
    assert torch.allclose(bridge_logits - bridge_logits.mean(-1, keepdim=True),
                          hf_logits - hf_logits.mean(-1, keepdim=True), atol=1e-4)
    clean_ld = reference.mean_logit_diff(bridge_logits, prompts).item()
    corrupted = prompts.tokens.clone()
    corrupted[batch, prompts.s2_pos] = prompts.io_tokens.roll(1)
    corrupted_ld = reference.mean_logit_diff(bridge(corrupted), prompts).item()

    def metric(logits):
        return reference.normalised_logit_diff(logits, prompts, clean_ld, corrupted_ld)

    heads = reference.patch_head_outputs(bridge, prompts.tokens, corrupted, metric, "z")
    assert heads.shape == (2, 4) and heads.isfinite().all()
    into = reference.path_patch_head_to_heads(bridge, prompts.tokens, corrupted, metric, [(1, 0)], "q")
    assert into.shape == (2, 4) and into[0].isfinite().all()


def test_gpt2_offline_is_skipped_with_one_line(capsys):
    from toy_models.hf import load_gpt2_bridge

    assert load_gpt2_bridge("gpt2-not-cached-here") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("Skipping GPT-2")


# --------------------------------------------------------------------------- notebooks
