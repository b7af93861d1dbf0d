"""The attribution-graph page: a static web page that draws a pruned attribution graph.

    mi-course graph "def parse(self, text)" --out graph/    # then open graph/index.html

`snippets` finds the validation code each feature node fires on most (with the feature
explorer's functions); `site` builds the graph (`toy_models.attribution`) and writes it, in
circuit-tracer's JSON schema, with the page, as a folder that opens from disk with no
server and no network.
"""

from mi_course.graph_page.site import build_graph_page, slug_of, write_graph_page
from mi_course.graph_page.snippets import feature_key, graph_feature_snippets, graph_features

__all__ = ["build_graph_page", "feature_key", "graph_feature_snippets", "graph_features", "slug_of", "write_graph_page"]
