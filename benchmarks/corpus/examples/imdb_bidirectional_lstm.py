"""Keras 2.3.1 examples/imdb_bidirectional_lstm.py, the model and its parameters as written (data loading,
compile and fit removed): Embedding, Bidirectional(LSTM), Dropout, Dense. MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras.layers import Dense, Dropout, Embedding, LSTM, Bidirectional

    max_features = 20000
    # cut texts after this number of words
    # (among top max_features most common words)
    maxlen = 100

    model = Sequential()
    model.add(Embedding(max_features, 128, input_length=maxlen))
    model.add(Bidirectional(LSTM(64)))
    model.add(Dropout(0.5))
    model.add(Dense(1, activation='sigmoid'))
    return {"model": model, "sample": "tokens"}
