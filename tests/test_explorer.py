"""The feature explorer: its numbers against direct computations, then the page in a real
headless Chromium (it loads, a card expands, the search filters).

The SAE here is a small random one on `code-2l`'s layer-0 neurons, so the tests do not
depend on the shipped SAE; the explorer takes any SAE with the same interface.
"""

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from headless_chromium import headless_chromium, page
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from mi_course.cli import main as cli_main
from mi_course.explorer import (
    activation_histogram,
    byte_label,
    byte_text,
    feature_logit_effects,
    feature_records,
    load_labels,
    summarize_features,
    validation_windows,
    window_activations,
    write_site,
)
from toy_models import load_pretrained
from toy_models.checkpoints import SHIPPED_DIR
from toy_models.data import load_python_corpus
from toy_models.sae import SHIPPED_SAE, SAEConfig, SparseAutoencoder

D_SAE = 48
DEAD = 5  # a feature whose bias keeps it off on every token
N_WINDOWS = 16
TOP_K = 4
SHOWN = 12  # features written to the test site
LABEL = "Opening <b>brackets</b> & such"  # markup in a label must be shown, not parsed


def random_sae(hook_name: str, d_in: int, seed: int = 0) -> SparseAutoencoder:
    """A random SAE whose features fire on a minority of tokens, with one dead feature."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=D_SAE, hook_name=hook_name)).eval()
    with torch.no_grad():
        sae.b_enc.fill_(-0.3)
        sae.b_enc[DEAD] = -1e4
    return sae


@pytest.fixture(scope="module")
def model():
    return load_pretrained("code-2l")


@pytest.fixture(scope="module")
def sae():
    return random_sae("blocks.0.mlp.hook_post", d_in=512)


@pytest.fixture(scope="module")
def tokens(model):
    return validation_windows(N_WINDOWS, model.cfg.n_ctx, seed=1)


@pytest.fixture(scope="module")
def summary(model, sae, tokens):
    return summarize_features(model, sae, tokens, top_k=TOP_K, progress=False)


@pytest.fixture(scope="module")
def dense(model, sae, tokens):
    """Every feature's activation on every token, computed directly: [window, pos, d_sae]."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=sae.cfg.hook_name)
        return sae.encode(cache[sae.cfg.hook_name])


@pytest.fixture(scope="module")
def records(summary):
    return feature_records(summary, list(range(D_SAE)), labels={2: LABEL})


# ------------------------------------------------------------------ the numbers


def test_validation_windows_are_distinct_slices_of_the_validation_corpus():
    windows = validation_windows(20, 64, seed=3)
    corpus = load_python_corpus("validation")
    assert windows.shape == (20, 64)
    assert torch.equal(windows, validation_windows(20, 64, seed=3))
    aligned = corpus[: corpus.shape[0] // 64 * 64].view(-1, 64)
    assert (aligned == windows[0]).all(1).any(), "the first window is not one of the corpus's consecutive windows"
    assert len({tuple(w.tolist()) for w in windows}) == 20, "windows repeat: top snippets would show the same text"
    with pytest.raises(ValueError, match="validation corpus has"):
        validation_windows(10**7, 64)


def test_sparse_activations_hold_exactly_the_nonzero_activations(summary, dense):
    acts = summary.acts
    rebuilt = torch.zeros(acts.n_tokens, acts.d_sae)
    rebuilt[acts.token_index, acts.feature] = acts.value
    assert torch.equal(rebuilt.view_as(dense), dense)
    assert (acts.value > 0).all()


def test_frequency_and_max_match_a_direct_computation(summary, dense):
    flat = dense.flatten(0, 1)
    torch.testing.assert_close(summary.frequency, (flat > 0).float().mean(0))
    torch.testing.assert_close(summary.max_activation, flat.max(0).values)
    assert summary.frequency[DEAD] == 0 and 0 < summary.frequency.mean() < 0.9, "the test SAE should be sparse"


def test_histogram_counts_every_nonzero_activation_once(summary, dense):
    flat = dense.flatten(0, 1)
    assert summary.histogram.shape == (D_SAE, 20)
    assert torch.equal(summary.histogram.sum(1), (flat > 0).sum(0))
    for feature in range(D_SAE):
        values = flat[:, feature][flat[:, feature] > 0]
        if values.numel():  # bins from 0 to the feature's own max, the max in the last bin
            expected = torch.histc(values, bins=20, min=0, max=float(values.max()))
            assert torch.equal(summary.histogram[feature], expected.long()), f"feature {feature}"
    assert summary.histogram[DEAD].sum() == 0
    assert activation_histogram(summary.acts, n_bins=7).shape == (D_SAE, 7)
    assert torch.equal(activation_histogram(summary.acts, chunk_size=1000), summary.histogram)


def test_top_activations_are_the_best_window_maxima(summary, dense):
    window_max = dense.max(dim=1).values.T  # [d_sae, window]
    expected = window_max.topk(TOP_K, dim=-1).values
    torch.testing.assert_close(summary.top.value, expected)
    for feature in range(D_SAE):
        live = summary.top.value[feature] > 0
        windows = summary.top.window[feature][live]
        assert len(set(windows.tolist())) == len(windows), "one snippet per window"
        positions = summary.top.pos[feature][live]
        torch.testing.assert_close(dense[windows, positions, feature], summary.top.value[feature][live])


def test_window_activations_are_a_features_activations_across_a_window(summary, dense):
    features, windows = torch.tensor([0, 7, DEAD, 7]), torch.tensor([3, 0, 2, 3])
    got = window_activations(summary.acts, features, windows)
    torch.testing.assert_close(got, dense[windows, :, features])
    torch.testing.assert_close(window_activations(summary.acts, features, windows, chunk_size=1000), got)


def test_top_snippet_contains_the_features_max_activation(summary, records, tokens, dense):
    for record in records:
        if record["dead"]:
            continue
        top = record["snippets"][0]
        feature = record["id"]
        assert top["acts"][top["max"]] == pytest.approx(float(summary.max_activation[feature]), abs=1e-3)
        assert max(top["acts"]) == top["acts"][top["max"]]
        maxima = [s["acts"][s["max"]] for s in record["snippets"]]
        assert maxima == sorted(maxima, reverse=True), "snippets best first"
        # The snippet is the text around the max, with this feature's activations on it.
        window = int(summary.top.window[feature, 0])
        pos = int(summary.top.pos[feature, 0])
        start = pos - top["max"]
        assert top["tokens"] == tokens[window, start : start + len(top["tokens"])].tolist()
        expected_acts = dense[window, start : start + len(top["tokens"]), feature]
        torch.testing.assert_close(torch.tensor(top["acts"]), expected_acts, atol=1e-3, rtol=0)
        assert top["max"] == min(40, pos) and len(top["tokens"]) <= 40 + 1 + 16


def test_dead_features_are_listed_as_dead(records):
    dead = records[DEAD]
    assert dead["dead"] and dead["snippets"] == [] and dead["frequency"] == 0
    assert sum(r["dead"] for r in records) == 1


def test_promoted_tokens_of_an_mlp_sae_go_through_W_out_and_the_unembedding(model, sae, records):
    # Direct computation: decoder row -> neuron space times W_out -> residual, then LN's w and W_U.
    feature = 3
    with torch.no_grad():
        direction = sae.W_dec[feature] @ model.blocks[0].mlp.W_out
        logits = (direction * model.ln_final.w) @ model.W_U
    assert [t for t, _ in records[feature]["promoted"]] == logits.topk(10).indices.tolist()
    assert [t for t, _ in records[feature]["suppressed"]] == (-logits).topk(10).indices.tolist()
    assert records[feature]["promoted"][0][1] == pytest.approx(float(logits.max()), abs=1e-3)


def test_promoted_tokens_of_a_residual_sae_use_its_decoder_as_it_stands(model):
    resid_sae = random_sae("blocks.1.hook_resid_post", d_in=model.cfg.d_model)
    effects = feature_logit_effects(model, resid_sae, fold_ln_final=False)
    torch.testing.assert_close(effects, resid_sae.W_dec.detach() @ model.W_U.detach())
    with pytest.raises(ValueError, match="No linear path"):
        feature_logit_effects(model, random_sae("blocks.0.attn.hook_z", d_in=32))


def test_bytes_are_shown_visibly():
    assert [byte_text(b) for b in b"a\n\t\r "] == ["a", "⏎", "→", "␍", " "]
    assert byte_label(ord(" ")) == "␣" and byte_text(0xE2) == "\\xe2" and byte_text(0) == "\\x00"


def test_labels_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"3": "indentation", "12": "<b>"}), encoding="utf-8")
    assert load_labels(path, d_sae=16) == {3: "indentation", 12: "<b>"}
    path.write_text(json.dumps({"16": "out of range"}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a feature id"):
        load_labels(path, d_sae=16)


# ------------------------------------------------------------------ the site


def read_data(folder: Path) -> dict:
    text = (folder / "data.js").read_text(encoding="utf-8")
    return json.loads(text.removeprefix("window.EXPLORER_DATA = ").rstrip(";\n"))


@pytest.fixture(scope="module")
def site(records):
    out = Path(tempfile.mkdtemp(prefix="explorer-test-"))
    meta = {
        "title": "Test explorer", "hook_name": "blocks.0.mlp.hook_post", "d_sae": D_SAE, "n_windows": N_WINDOWS,
        "n_tokens": N_WINDOWS * 128, "n_bins": 20, "n_dead": 1,
        "byte_text": [byte_text(b) for b in range(256)], "byte_label": [byte_label(b) for b in range(256)],
    }
    yield write_site(records[:SHOWN], meta, out)
    shutil.rmtree(out, ignore_errors=True)


def test_site_is_one_self_contained_folder(site):
    folder = site.parent
    assert sorted(p.name for p in folder.iterdir()) == ["data.js", "explorer.css", "explorer.js", "index.html", "page.js"]
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, f"{path.name} refers to {urls}: the page must work offline"
        assert "@import" not in text and "url(" not in text
    html = site.read_text(encoding="utf-8")
    assert html.index('src="page.js"') < html.index('src="explorer.js"')  # its helpers first
    assert html.index('src="data.js"') < html.index('src="explorer.js"')
    data = read_data(folder)
    assert len(data["features"]) == SHOWN and data["features"][2]["label"] == LABEL


def test_explore_command_writes_the_shipped_saes_site(tmp_path, capsys):
    if not (SHIPPED_DIR / SHIPPED_SAE / "config.json").exists():
        pytest.skip(f"the shipped SAE {SHIPPED_SAE} is not in toy_models/checkpoints yet")
    out = tmp_path / "site"
    assert cli_main(["explore", "--out", str(out), "--windows", "8", "--features", "5"]) == 0
    assert capsys.readouterr().out.strip().endswith("index.html") and (out / "index.html").exists()
    data = read_data(out)
    assert [f["id"] for f in data["features"]] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ the page in a real browser


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium("1200,900")


def visible_ids(driver) -> list[int]:
    return [int(card.get_attribute("data-id")) for card in driver.find_elements(By.CSS_SELECTOR, "details.card")
            if card.is_displayed()]


def search_for(driver, text: str) -> None:
    box = driver.find_element(By.ID, "search")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(text)


def haystack(record: dict, meta_text: list[str], meta_label: list[str]) -> str:
    """What the page searches, as explorer.js builds it."""
    parts = [f"#{record['id']}", record["label"] or ""]
    parts += ["".join(meta_text[b] for b in s["tokens"]) for s in record["snippets"]]
    parts += [meta_label[b] for b, _ in record["promoted"] + record["suppressed"]]
    return "\n".join(parts).lower()


def test_page_loads_with_one_card_per_feature_and_no_errors(browser, site):
    driver = page(browser, site)
    assert driver.title == "Test explorer"
    assert visible_ids(driver) == list(range(SHOWN))
    assert driver.find_element(By.ID, "count").text == f"Showing {SHOWN} of {SHOWN} features"
    label = driver.find_element(By.CSS_SELECTOR, "#feature-2 .label")
    assert label.text == LABEL, "a label's markup must be shown as text"
    assert "dead" in driver.find_element(By.ID, f"feature-{DEAD}").get_attribute("class")
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], f"the page logged errors: {errors}"


def test_clicking_a_card_expands_it(browser, site, records):
    driver = page(browser, site)
    card = driver.find_element(By.ID, "feature-0")
    assert not card.find_elements(By.CSS_SELECTOR, ".snippet"), "closed cards render their body on opening"
    card.find_element(By.TAG_NAME, "summary").click()
    assert card.get_attribute("open") is not None
    # The body is rendered by the card's "toggle" event, which the browser fires after the click returns.
    snippets = WebDriverWait(driver, 5).until(lambda _: card.find_elements(By.CSS_SELECTOR, ".snippet"))
    assert len(snippets) == len(records[0]["snippets"]) > 0 and all(s.is_displayed() for s in snippets)
    peak = snippets[0].find_element(By.CSS_SELECTOR, ".tok.peak")
    assert "activation " in peak.get_attribute("title"), "the tooltip gives the activation"
    assert peak.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.histogram rect.bar")) == 20
    assert len(card.find_elements(By.CSS_SELECTOR, ".tokens.promoted li")) == 10
    card.find_element(By.TAG_NAME, "summary").click()
    assert not any(s.is_displayed() for s in snippets), "a second click closes the card"
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_search_filters_the_cards(browser, site, records):
    driver = page(browser, site)
    meta = read_data(site.parent)["meta"]
    shown = records[:SHOWN]

    search_for(driver, "#7")
    assert visible_ids(driver) == [7]
    search_for(driver, "brackets")  # a label
    assert visible_ids(driver) == [2]
    # Text from a feature's top snippet: exactly the cards whose text contains it remain.
    top = shown[0]["snippets"][0]
    around_max = top["tokens"][max(0, top["max"] - 3) : top["max"] + 2]
    query = "".join(meta["byte_text"][b] for b in around_max).strip().lower()
    expected = [r["id"] for r in shown if query in haystack(r, meta["byte_text"], meta["byte_label"])]
    search_for(driver, query)
    assert 0 in visible_ids(driver) and visible_ids(driver) == expected
    assert driver.find_element(By.ID, "count").text == f"Showing {len(expected)} of {SHOWN} features"
    search_for(driver, "no feature has this text \u00a7")
    assert visible_ids(driver) == []
    search_for(driver, "")
    assert len(visible_ids(driver)) == SHOWN


def test_sorting_and_hiding_dead_features(browser, site, records):
    driver = page(browser, site)
    Select(driver.find_element(By.ID, "sort")).select_by_value("max")
    by_max = sorted(records[:SHOWN], key=lambda r: (-r["max"], r["id"]))
    assert visible_ids(driver) == [r["id"] for r in by_max]
    driver.find_element(By.ID, "hide-dead").click()
    assert DEAD not in visible_ids(driver) and len(visible_ids(driver)) == SHOWN - 1

