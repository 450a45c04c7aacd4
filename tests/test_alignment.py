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


def chained(name, class_name, inbound, shape):
    return {"name": name, "class_name": class_name, "inbound": [inbound], "output_shapes": [list(shape)]}


def groups(pairs):
    return [(p.chain("a"), p.chain("b"), p.inbound("a"), p.inbound("b")) for p in pairs]


def test_a_padding_layer_of_one_side_joins_the_conv_it_feeds():
    a = [chained("conv", "Conv2D", "input:x", (None, 8, 8, 8)), chained("flat", "Flatten", "conv", (None, 512))]
    b = [chained("pad", "ZeroPadding2D", "input:x", (None, 18, 18, 3)),
         chained("conv", "Conv2D", "pad", (None, 8, 8, 8)), chained("flat", "Flatten", "conv", (None, 512))]
    assert groups(align_layers(a, b)) == [(("conv",), ("pad", "conv"), ("input:x",), ("input:x",)),
                                          (("flat",), ("flat",), ("conv",), ("conv",))]
    assert groups(align_layers(b, a))[0] == (("pad", "conv"), ("conv",), ("input:x",), ("input:x",))


def test_an_activation_or_dropout_of_one_side_joins_the_layer_before_it_and_the_pair_is_compared_after_them():
    a = [chained("d1", "Dense", "input:v", (None, 16)), chained("d2", "Dense", "d1", (None, 4))]
    b = [chained("d1", "Dense", "input:v", (None, 16)), chained("act", "Activation", "d1", (None, 16)),
         chained("drop", "Dropout", "act", (None, 16)), chained("d2", "Dense", "drop", (None, 4))]
    pairs = align_layers(a, b)
    assert groups(pairs) == [(("d1",), ("d1", "act", "drop"), ("input:v",), ("input:v",)),
                             (("d2",), ("d2",), ("d1",), ("drop",))]
    assert [(p.cut("a"), p.cut("b")) for p in pairs] == [("d1", "drop"), ("d2", "d2")]


def test_a_one_sided_layer_off_the_chain_stays_one_sided():
    # the Dense's output also feeds another layer: an Activation after it is a branch, not part of it
    a = [chained("d1", "Dense", "input:v", (None, 16)), chained("d2", "Dense", "d1", (None, 16))]
    b = [chained("d1", "Dense", "input:v", (None, 16)), chained("act", "Activation", "d1", (None, 16)),
         chained("d2", "Dense", "d1", (None, 16))]
    assert names(align_layers(a, b)) == [("d1", "d1", "name"), (None, "act", ""), ("d2", "d2", "name")]
