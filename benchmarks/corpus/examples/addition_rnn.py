"""Keras 2.3.1 examples/addition_rnn.py, the model and its parameters as written (the question generator,
compile and fit removed): LSTM encoder, RepeatVector, LSTM decoder, TimeDistributed(Dense softmax); inputs are
one-hot characters of '0123456789+ ' (DIGITS = 3, MAXLEN = DIGITS + 1 + DIGITS). MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras import layers

    # Parameters for the model and dataset.
    DIGITS = 3
    MAXLEN = DIGITS + 1 + DIGITS
    chars = '0123456789+ '

    # Try replacing GRU, or SimpleRNN.
    RNN = layers.LSTM
    HIDDEN_SIZE = 128
    LAYERS = 1

    model = Sequential()
    model.add(RNN(HIDDEN_SIZE, input_shape=(MAXLEN, len(chars))))
    model.add(layers.RepeatVector(DIGITS + 1))
    for _ in range(LAYERS):
        model.add(RNN(HIDDEN_SIZE, return_sequences=True))
    model.add(layers.TimeDistributed(layers.Dense(len(chars), activation='softmax')))
    return {"model": model, "sample": "one_hot"}
