"""Keras 2.3.1 examples/mnist_hierarchical_rnn.py, the model as written (data loading, compile and fit
removed): TimeDistributed(LSTM) over the rows of a 28x28x1 image, LSTM over the encoded rows, Dense softmax.
MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Model
    from keras.layers import Input, Dense, TimeDistributed
    from keras.layers import LSTM

    num_classes = 10

    # Embedding dimensions.
    row_hidden = 128
    col_hidden = 128

    row, col, pixel = 28, 28, 1   # x_train.shape[1:] after the example's reshape

    # 4D input.
    x = Input(shape=(row, col, pixel))

    # Encodes a row of pixels using TimeDistributed Wrapper.
    encoded_rows = TimeDistributed(LSTM(row_hidden))(x)

    # Encodes columns of encoded rows.
    encoded_columns = LSTM(col_hidden)(encoded_rows)

    # Final predictions and model.
    prediction = Dense(num_classes, activation='softmax')(encoded_columns)
    model = Model(x, prediction)
    return {"model": model, "sample": "unit"}
