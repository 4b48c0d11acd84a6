"""exporters.graph's one walker reaches every nested graph: GRAPH attributes and GRAPHS (graph-list) attributes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exporters.graph import all_graphs, all_nodes, compact_names, drop_unused_initializers, subgraphs, tidy_opsets
from rnnedge.inspect import describe_onnx


def _nested_model() -> onnx.ModelProto:
    """Top: If(then=..., else=...) and a custom node with a GRAPHS attribute whose second graph holds a
    node of domain 'deep' that reads the top-level initializer 'w_deep' (only there)."""
    deep = helper.make_graph([helper.make_node("Mul", ["a", "w_deep"], ["b"], domain="deep", name="deep_mul")], "deep",
                             [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                             [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    shallow = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="shallow_id")], "shallow", [],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    branch = helper.make_graph([helper.make_node("Neg", ["x"], ["n"], name="branch_neg")], "branch", [],
                               [helper.make_tensor_value_info("n", TensorProto.FLOAT, [1])])
    holder = helper.make_node("Holder", ["x"], ["h"], domain="custom", name="holder")
    holder.attribute.append(helper.make_attribute("bodies", [shallow, deep]))  # a GRAPHS attribute
    cond = helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch, name="if")
    graph = helper.make_graph([holder, cond], "top",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1]),
                               helper.make_tensor_value_info("h", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.ones(1, np.float32), "w_deep"),
                               numpy_helper.from_array(np.ones(1, np.float32), "w_unused")])
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("custom", 1), helper.make_opsetid("deep", 1),
              helper.make_opsetid("gone", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_walker_reaches_graph_and_graph_list_attributes():
    model = _nested_model()
    assert [g.name for g in subgraphs(model.graph)] == ["shallow", "deep", "branch", "branch"]
    assert [g.name for g in all_graphs(model.graph)][0] == "top"
    assert {n.name for n in all_nodes(model.graph)} == {"holder", "if", "shallow_id", "deep_mul", "branch_neg"}


def test_graph_edits_see_the_graph_list_bodies():
    model = _nested_model()
    drop_unused_initializers(model.graph)
    assert [t.name for t in model.graph.initializer] == ["w_deep"]  # read only inside a GRAPHS body
    tidy_opsets(model)
    assert sorted(o.domain for o in model.opset_import) == ["", "custom", "deep"]  # 'gone' dropped, 'deep' kept
    compact_names(model)
    deep = next(g for g in all_graphs(model.graph) if g.name == "deep")
    assert deep.node[0].input[1] == "w_deep" and not deep.node[0].name


def test_inspect_counts_operators_in_every_nested_graph(tmp_path):
    path = tmp_path / "nested.onnx"
    path.write_bytes(_nested_model().SerializeToString())
    ops = describe_onnx(path)["operators"]
    assert ops == {"If": 1, "Identity": 1, "Neg": 2, "custom.Holder": 1, "deep.Mul": 1}
