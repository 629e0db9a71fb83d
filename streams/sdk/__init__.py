"""Engine SDK: a small client for the marketing engines that consume the filter's topics.

See :mod:`streams.sdk.consumer` for the whole story (read_committed, decoding,
erasure hook, decryption with the KEK, lag, bounded iteration)::

    from streams.sdk import EngineConsumer
    with EngineConsumer(engine="email", bootstrap="kafka:9092", group="email-engine",
                        kek=os.environ["PFILTER_KEK"], on_erasure=forget) as c:
        for event in c.iter(timeout=1.0):
            ...
"""

from streams.sdk.consumer import EngineConsumer, ErasureUnhandled, SdkError

__all__ = ["EngineConsumer", "ErasureUnhandled", "SdkError"]
