"""Keras 2.3.1 examples/cifar10_cnn.py, the model (data loading, compile, augmentation and fit removed).
``input_shape=x_train.shape[1:]``: cifar10.load_data() gives (3, 32, 32) under channels_first and (32, 32, 3)
under channels_last. MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors:
LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras.layers import Dense, Dropout, Activation, Flatten
    from keras.layers import Conv2D, MaxPooling2D

    num_classes = 10
    x_train_shape = (None, 3, 32, 32) if data_format == 'channels_first' else (None, 32, 32, 3)

    model = Sequential()
    model.add(Conv2D(32, (3, 3), padding='same',
                     input_shape=x_train_shape[1:]))
    model.add(Activation('relu'))
    model.add(Conv2D(32, (3, 3)))
    model.add(Activation('relu'))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))

    model.add(Conv2D(64, (3, 3), padding='same'))
    model.add(Activation('relu'))
    model.add(Conv2D(64, (3, 3)))
    model.add(Activation('relu'))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))

    model.add(Flatten())
    model.add(Dense(512))
    model.add(Activation('relu'))
    model.add(Dropout(0.5))
    model.add(Dense(num_classes))
    model.add(Activation('softmax'))
    return {"model": model, "sample": "unit"}   # x_train /= 255
