"""The attribution-graph page: its feature snippets against direct computations, the written
folder, then the page in a real headless Chromium (it loads, draws every node, a click shows
a node's details, edges and snippets, a hover lights its edges).

The graph here is a small hand-made one in circuit-tracer's JSON schema and the transcoders
are random, so the tests depend on neither the attribution code nor trained transcoders.
"""

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from headless_chromium import headless_chromium, page
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from mi_course.cli import main as cli_main
from mi_course.explorer import byte_label, validation_windows
from mi_course.graph_page import (
    build_graph_page,
    feature_key,
    graph_feature_snippets,
    graph_features,
    slug_of,
    write_graph_page,
)
from toy_models import load_pretrained
from toy_models.checkpoints import SHIPPED_DIR
from toy_models.transcoder import Transcoder, TranscoderConfig, shipped_transcoder_name

PROMPT = "def f(x):"
N_LAYERS = 2
N_WINDOWS = 8
TOP_K = 3
CLERP = "<b>not markup</b> & co"  # a node's text must be shown, not parsed


def feature_node(layer: int, feature: int, pos: int, influence: float, activation: float) -> dict:
    """A feature node as circuit-tracer's `Node.feature_node` writes it (one transcoder per layer)."""
    return {
        "node_id": f"{layer}_{feature}_{pos}", "feature": feature, "layer": str(layer), "ctx_idx": pos,
        "feature_type": "cross layer transcoder", "token_prob": 0.0, "is_target_logit": False, "run_idx": 0,
        "reverse_ctx_idx": 0, "jsNodeId": f"{layer}_{feature}-0", "clerp": "", "influence": influence,
        "activation": activation,
    }


def synthetic_graph() -> dict:
    """A pruned graph of PROMPT: every token, five features (feature 12 of layer 0 at two
    positions), two error nodes and two logits, with edges of both signs."""
    prompt = PROMPT.encode()
    last = len(prompt) - 1
    nodes = [
        {"node_id": f"E_{b}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos, "feature_type": "embedding",
         "jsNodeId": f"E_{b}-{pos}", "clerp": "", "influence": 0.9, "activation": None}
        for pos, b in enumerate(prompt)
    ]
    nodes += [
        feature_node(0, 12, 4, 0.2, 3.5), feature_node(0, 12, last, 0.3, 2.0), feature_node(0, 40, 6, 0.5, 1.25),
        feature_node(1, 7, last, 0.1, 4.0), feature_node(1, 99, last, 0.4, 0.5),
    ]
    nodes[-1]["clerp"] = CLERP
    nodes += [
        {"node_id": f"0_{layer}_{last}", "feature": -1, "layer": str(layer), "ctx_idx": last,
         "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_{last}-0", "clerp": "", "influence": 0.6,
         "activation": None}
        for layer in range(N_LAYERS)
    ]
    nodes += [
        {"node_id": f"{N_LAYERS + 1}_{b}_{last}", "feature": b, "layer": str(N_LAYERS + 1), "ctx_idx": last,
         "feature_type": "logit", "token_prob": p, "is_target_logit": target, "jsNodeId": f"L_{b}-{last}",
         "clerp": f'Output "{byte_label(b)}" (p={p:.3f})', "influence": None, "activation": None}
        for b, p, target in ((ord("\n"), 0.62, True), (ord(" "), 0.21, False))
    ]
    colon, newline, space = f"E_{ord(':')}_{last}", f"{N_LAYERS + 1}_10_{last}", f"{N_LAYERS + 1}_32_{last}"
    edges = [
        (f"E_{ord('f')}_4", "0_12_4", 1.5), ("0_12_4", f"1_7_{last}", 0.8), (f"E_{ord('x')}_6", "0_40_6", -0.4),
        ("0_40_6", f"1_7_{last}", -0.3), (colon, f"0_12_{last}", 2.0), (f"0_12_{last}", f"1_7_{last}", 1.1),
        (f"0_12_{last}", f"1_99_{last}", 0.2), (f"1_7_{last}", newline, 3.0), (f"1_7_{last}", space, -1.0),
        (f"1_99_{last}", newline, 0.1), (f"0_0_{last}", f"1_7_{last}", 0.5), (f"0_1_{last}", newline, -0.6),
        (colon, newline, 0.7),
    ]
    return {
        "metadata": {"slug": "def-f", "scan": "code-2l-transcoders", "transcoder_list": [],
                     "prompt_tokens": [byte_label(b) for b in prompt], "prompt": PROMPT, "node_threshold": 0.8},
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": [{"source": s, "target": t, "weight": w} for s, t, w in edges],
    }


def random_transcoder(layer: int) -> Transcoder:
    with torch.random.fork_rng():
        torch.manual_seed(layer)
        return Transcoder(TranscoderConfig(128, 1024, layer, 16)).eval()


@pytest.fixture(scope="module")
def model():
    return load_pretrained("code-2l")


@pytest.fixture(scope="module")
def transcoders():
    return [random_transcoder(layer) for layer in range(N_LAYERS)]


@pytest.fixture(scope="module")
def tokens(model):
    return validation_windows(N_WINDOWS, model.cfg.n_ctx, seed=2)


@pytest.fixture(scope="module")
def snippets(model, transcoders, tokens):
    return graph_feature_snippets(model, transcoders, synthetic_graph(), tokens, top_k=TOP_K, progress=False)


# ------------------------------------------------------------------ the snippets


def test_graph_features_are_the_feature_nodes_each_once():
    assert graph_features(synthetic_graph()) == {0: [12, 40], 1: [7, 99]}


def test_snippets_show_each_feature_nodes_top_activations(model, transcoders, tokens, snippets):
    assert set(snippets) == {feature_key(0, 12), feature_key(0, 40), feature_key(1, 7), feature_key(1, 99)}
    for transcoder in transcoders:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=transcoder.cfg.hook_in)
            dense = transcoder.encode(cache[transcoder.cfg.hook_in])  # [window, pos, d_transcoder]
        for feature in graph_features(synthetic_graph())[transcoder.cfg.layer]:
            record = snippets[feature_key(transcoder.cfg.layer, feature)]
            window_max = dense[..., feature].max(dim=1).values
            assert record["max"] == pytest.approx(float(window_max.max()), abs=1e-3)
            expected = window_max[window_max > 0].sort(descending=True).values[:TOP_K].tolist()
            assert [s["acts"][s["max"]] for s in record["snippets"]] == pytest.approx(expected, abs=1e-3)
            for s in record["snippets"]:  # each snippet is a piece of a window, with this feature's activations
                windows = [w for w in range(N_WINDOWS) if torch.isclose(window_max[w], torch.tensor(s["acts"][s["max"]]),
                                                                        atol=1e-3)]
                found = [w for w in windows for start in range(tokens.shape[1] - len(s["tokens"]) + 1)
                         if tokens[w, start : start + len(s["tokens"])].tolist() == s["tokens"]
                         and torch.allclose(dense[w, start : start + len(s["tokens"]), feature],
                                            torch.tensor(s["acts"]), atol=1e-3)]
                assert found, f"a snippet of feature {feature} is not a window's text with its activations"


# ------------------------------------------------------------------ the folder


def read_data(folder: Path) -> dict:
    text = (folder / "data.js").read_text(encoding="utf-8")
    return json.loads(text.removeprefix("window.GRAPH_DATA = ").rstrip(";\n"))


@pytest.fixture(scope="module")
def site(snippets):
    out = Path(tempfile.mkdtemp(prefix="graph-page-test-"))
    yield write_graph_page(synthetic_graph(), snippets, out)
    shutil.rmtree(out, ignore_errors=True)


def test_page_is_one_self_contained_folder(site):
    folder = site.parent
    assert sorted(p.name for p in folder.iterdir()) == ["data.js", "graph.css", "graph.js", "graph.json", "index.html", "page.js"]
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, f"{path.name} refers to {urls}: the page must work offline"
        assert "@import" not in text and "url(" not in text and ".innerHTML" not in text
    html = site.read_text(encoding="utf-8")
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == ["graph.css", "page.js", "data.js", "graph.js"]


def test_graph_json_round_trips(site, snippets):
    assert json.loads((site.parent / "graph.json").read_text(encoding="utf-8")) == synthetic_graph()
    data = read_data(site.parent)
    assert data["graph"] == synthetic_graph() and data["snippets"] == snippets
    assert data["byte_text"][ord("\n")] == "⏎" and len(data["byte_text"]) == 256


# circuit-tracer's frontend schema (circuit_tracer/frontend/graph_models.py): the fields of each part.
METADATA_FIELDS = {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold"}
QPARAMS_FIELDS = {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"}
NODE_FIELDS = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx",
               "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation"}


def test_a_real_graph_of_random_transcoders_is_written_in_circuit_tracers_schema(model, transcoders, tmp_path):
    prompt = "def f(x):"
    index, graph_json = build_graph_page(model, transcoders, prompt, tmp_path / "page", node_threshold=0.9,
                                         n_windows=N_WINDOWS, top_k=2, progress=False)
    assert json.loads((index.parent / "graph.json").read_text(encoding="utf-8")) == graph_json
    assert read_data(index.parent)["graph"] == graph_json
    assert set(graph_json["metadata"]) >= METADATA_FIELDS and set(graph_json["qParams"]) == QPARAMS_FIELDS
    assert graph_json["metadata"]["prompt_tokens"] == [byte_label(b) for b in prompt.encode()]
    assert graph_json["metadata"]["node_threshold"] == 0.9 and graph_json["metadata"]["slug"] == slug_of(prompt)
    assert all(set(node) == NODE_FIELDS for node in graph_json["nodes"])
    kinds = {node["feature_type"] for node in graph_json["nodes"]}
    assert kinds <= {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}
    assert "cross layer transcoder" in kinds and "logit" in kinds
    ids = {node["node_id"] for node in graph_json["nodes"]}
    assert len(ids) == len(graph_json["nodes"]) and graph_json["links"]
    assert all(link["source"] in ids and link["target"] in ids for link in graph_json["links"])
    by_layer = graph_features(graph_json)
    assert set(read_data(index.parent)["snippets"]) == {feature_key(layer, f) for layer, fs in by_layer.items() for f in fs}


def test_graph_command_writes_the_shipped_transcoders_graph(tmp_path, capsys):
    if not (SHIPPED_DIR / shipped_transcoder_name("code-2l", 0) / "config.json").exists():
        pytest.skip("the shipped transcoders of code-2l are not in toy_models/checkpoints yet")
    out = tmp_path / "graph"
    assert cli_main(["graph", PROMPT, "--out", str(out), "--windows", str(N_WINDOWS)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].endswith("index.html") and (out / "index.html").exists()
    graph_json = json.loads((out / "graph.json").read_text(encoding="utf-8"))
    assert printed[0].startswith(f"{len(graph_json['nodes'])} nodes") and f"{len(graph_json['links'])} edges" in printed[0]
    assert graph_json["metadata"]["prompt"] == PROMPT and read_data(out)["graph"] == graph_json


# ------------------------------------------------------------------ the page in a real browser


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium("1400,900")


def node_element(driver, node_id: str):
    return driver.find_element(By.CSS_SELECTOR, f'g.node[data-node-id="{node_id}"]')


def edges_of(node_id: str) -> list[dict]:
    return [link for link in synthetic_graph()["links"] if node_id in (link["source"], link["target"])]


def test_page_draws_one_node_per_graph_node_and_logs_no_errors(browser, site):
    driver = page(browser, site)
    graph = synthetic_graph()
    drawn = [g.get_attribute("data-node-id") for g in driver.find_elements(By.CSS_SELECTOR, "svg g.node")]
    assert sorted(drawn) == sorted(node["node_id"] for node in graph["nodes"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg line.edge")) == len(graph["links"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg line.edge.negative")) == sum(
        link["weight"] < 0 for link in graph["links"])
    # Error nodes and logits are drawn distinctly: their own shapes and classes.
    assert len(driver.find_elements(By.CSS_SELECTOR, "g.node.feature > circle")) == 5
    assert len(driver.find_elements(By.CSS_SELECTOR, "g.node.error > rect[transform]")) == 2
    assert len(driver.find_elements(By.CSS_SELECTOR, "g.node.logit.target")) == 1
    assert driver.title == f"Attribution graph: {PROMPT}"
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], f"the page logged errors: {errors}"


def test_layout_puts_tokens_at_the_bottom_and_layers_upward(browser, site):
    driver = page(browser, site)
    last = len(PROMPT) - 1

    def centre(node_id):
        rect = node_element(driver, node_id).find_element(By.CSS_SELECTOR, ".shape").rect
        return rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2

    embedding, layer0, layer1, logit = (centre(i) for i in (f"E_58_{last}", f"0_12_{last}", f"1_7_{last}", f"3_10_{last}"))
    assert embedding[1] > layer0[1] > layer1[1] > logit[1], "rows go up: embeddings, layer 0, layer 1, logits"
    assert centre("E_100_0")[0] < centre("E_102_4")[0] < embedding[0], "positions go left to right"
    assert centre("0_12_4")[0] == pytest.approx(centre("E_102_4")[0], abs=1), "a node sits above its token"
    tokens = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg text.token")]
    assert tokens == [byte_label(b) for b in PROMPT.encode()]


def test_clicking_a_feature_shows_its_details_edges_and_snippets(browser, site, snippets):
    driver = page(browser, site)
    last = len(PROMPT) - 1
    node_id = f"1_7_{last}"
    node_element(driver, node_id).click()
    details = driver.find_element(By.ID, "details")
    assert details.find_element(By.CSS_SELECTOR, ".fact-feature").text == "7"
    assert details.find_element(By.CSS_SELECTOR, ".fact-layer").text == "1"
    assert details.find_element(By.CSS_SELECTOR, ".fact-position").text.startswith(f"{last} ")
    assert details.find_element(By.CSS_SELECTOR, ".fact-activation").text == "4.00"
    assert details.find_element(By.CSS_SELECTOR, ".fact-influence").text == "0.100"
    incoming = [link for link in edges_of(node_id) if link["target"] == node_id]
    outgoing = [link for link in edges_of(node_id) if link["source"] == node_id]
    weights = [float(w.text) for w in details.find_elements(By.CSS_SELECTOR, ".edges.incoming .weight")]
    assert weights == sorted((link["weight"] for link in incoming), key=abs, reverse=True), "strongest first"
    assert len(details.find_elements(By.CSS_SELECTOR, ".edges.outgoing li")) == len(outgoing)
    selected = driver.find_elements(By.CSS_SELECTOR, "svg line.edge.selected")
    assert len(selected) == len(incoming) + len(outgoing)
    assert all(node_id in (e.get_attribute("data-source"), e.get_attribute("data-target")) for e in selected)

    # Its snippets are one click away, every byte shaded by the feature's activation.
    shown = details.find_elements(By.CSS_SELECTOR, ".snippet")
    assert not any(s.is_displayed() for s in shown)
    details.find_element(By.CSS_SELECTOR, "details.top-activations > summary").click()
    shown = details.find_elements(By.CSS_SELECTOR, ".snippet")
    record = snippets[feature_key(1, 7)]
    assert len(shown) == len(record["snippets"]) > 0 and all(s.is_displayed() for s in shown)
    tokens = shown[0].find_elements(By.CSS_SELECTOR, ".tok")
    assert len(tokens) == len(record["snippets"][0]["tokens"])
    peak = shown[0].find_element(By.CSS_SELECTOR, ".tok.peak")
    assert peak.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_clicking_an_edge_in_the_list_selects_its_other_end(browser, site):
    driver = page(browser, site)
    last = len(PROMPT) - 1
    node_element(driver, f"0_12_{last}").click()
    driver.find_element(By.XPATH, "//ol[contains(@class, 'outgoing')]//button[contains(., 'L1 #99')]").click()
    assert driver.find_element(By.CSS_SELECTOR, "g.node.selected").get_attribute("data-node-id") == f"1_99_{last}"
    assert driver.find_element(By.CSS_SELECTOR, "#details .muted").text == CLERP


def test_hovering_a_node_lights_its_edges(browser, site):
    driver = page(browser, site)
    node_id = f"E_{ord(':')}_{len(PROMPT) - 1}"
    ActionChains(driver).move_to_element(node_element(driver, node_id)).perform()
    lit = driver.find_elements(By.CSS_SELECTOR, "svg line.edge.lit")
    assert len(lit) == len(edges_of(node_id)) == 2
    assert "hovering" in driver.find_element(By.CSS_SELECTOR, "#graph svg").get_attribute("class")
    ActionChains(driver).move_to_element(driver.find_element(By.ID, "title")).perform()
    assert driver.find_elements(By.CSS_SELECTOR, "svg line.edge.lit") == []
