"""The exceptions the pipeline raises; the handler maps each to an HTTP status."""


class DeepfakeServeError(Exception):
    """Base of every error this project raises on purpose."""


class VideoInputError(DeepfakeServeError, ValueError):
    """The input is not a video the pipeline can read; the message says what is wrong.

    Raised for empty input, non-video bytes, images, audio-only files, truncated or corrupt
    containers, and streams with no decodable frame. A client error: the upload must change.
    """


class CheckpointError(DeepfakeServeError):
    """A checkpoint or its settings file is missing, malformed, or does not fit the network."""
