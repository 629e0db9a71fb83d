"""The signal encoders the tests use: they live in ``streams.population.signals`` (the
synthetic population makes TC and GPP strings with them), re-exported here."""

from streams.population.signals import (  # noqa: F401
    B64,
    US_SPEC,
    BitWriter,
    TCModel,
    encode_tc,
    encode_us,
    gpp_header,
    groups,
    usnat_spec,
    write_ranges,
    write_vendors,
)
