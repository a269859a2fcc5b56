import datetime as dt

from assay.crds.times import epoch, iso, parse_time, seconds_between

UTC = dt.timezone.utc


def test_every_spelling_of_a_time_reads_as_the_same_aware_moment():
    moment = dt.datetime(2026, 12, 6, 12, 0, 5, tzinfo=UTC)
    for spelling in (
        "2026-12-06T12:00:05Z",
        "2026-12-06T13:00:05+01:00",
        "2026-12-06T12:00:05",  # no zone: UTC
        " 2026-12-06T12:00:05Z ",
        moment.timestamp(),
        int(moment.timestamp()),
        moment,
        moment.replace(tzinfo=None),
    ):
        assert parse_time(spelling) == moment, spelling
        assert iso(spelling) == "2026-12-06T12:00:05Z", spelling
        assert epoch(spelling) == moment.timestamp(), spelling


def test_missing_or_unreadable_times_are_none_not_errors():
    for value in (None, "", "yesterday", "2026-13-01T00:00:00Z", True, []):
        assert parse_time(value) is None and epoch(value) is None and iso(value) is None, value


def test_seconds_between_is_never_negative_and_none_when_either_end_is_missing():
    assert seconds_between("2026-12-06T12:00:00Z", "2026-12-06T12:01:30Z") == 90.0
    assert seconds_between("2026-12-06T12:01:30Z", "2026-12-06T12:00:00Z") == 0.0
    assert seconds_between(None, "2026-12-06T12:00:00Z") is None
    assert seconds_between("2026-12-06T12:00:00Z", "soon") is None
