from kdiff.alignment import align_layers


def layer(name, shape=(None, 4)):
    return {"name": name, "class_name": "Dense", "inbound": [], "output_shapes": [list(shape)]}


def names(pairs):
    return [(p.a and p.a["name"], p.b and p.b["name"], p.aligned_by) for p in pairs]


def test_layers_pair_by_name_in_a_order():
    pairs = align_layers([layer("x"), layer("y")], [layer("y"), layer("x")])
    assert names(pairs) == [("x", "x", "name"), ("y", "y", "name")]


def test_renamed_layers_pair_by_order_and_shape():
    a = [layer("dense_1", (None, 8)), layer("dense_2", (None, 3))]
    b = [layer("fc1", (None, 8)), layer("fc2", (None, 3))]
    assert names(align_layers(a, b)) == [("dense_1", "fc1", "order"), ("dense_2", "fc2", "order")]


def test_a_layer_present_on_one_side_is_shown_not_skipped():
    a = [layer("in"), layer("extra", (None, 9)), layer("out")]
    b = [layer("in"), layer("b_only", (None, 2)), layer("out")]
    assert names(align_layers(a, b)) == [
        ("in", "in", "name"), ("extra", None, ""), (None, "b_only", ""), ("out", "out", "name")]


def test_order_fallback_never_pairs_backwards():
    a = [layer("p", (None, 1)), layer("q", (None, 2))]
    b = [layer("s", (None, 2)), layer("r", (None, 1))]
    pairs = names(align_layers(a, b))
    assert ("p", "r", "order") in pairs
    assert ("q", None, "") in pairs and (None, "s", "") in pairs
