"""When the hub's lecture-prestart service starts the class: cron lines read in the course's time zone."""

from datetime import datetime, timezone

from d2lhub.ops.prestart import next_start


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=timezone.utc)


def test_the_earliest_line_wins():
    due = next_start(("50 8 * * wed", "50 8 * * mon"), "UTC", utc(2026, 11, 23, 12, 0))  # a Monday, after class
    assert due == utc(2026, 11, 25, 8, 50)


def test_a_start_just_passed_waits_for_the_next_one():
    assert next_start(("50 8 * * *",), "UTC", utc(2026, 11, 23, 8, 50)) == utc(2026, 11, 24, 8, 50)


def test_lecture_times_follow_daylight_saving_in_their_zone():
    before = next_start(("50 8 * * mon",), "Europe/Berlin", utc(2026, 3, 20))  # winter time: UTC+1
    after = next_start(("50 8 * * mon",), "Europe/Berlin", utc(2026, 3, 30))  # summer time: UTC+2
    assert before.astimezone(timezone.utc) == utc(2026, 3, 23, 7, 50)
    assert after.astimezone(timezone.utc) == utc(2026, 3, 30, 6, 50)


def test_a_sixth_field_counts_seconds():
    assert next_start(("* * * * * */20",), "UTC", utc(2026, 11, 23, 9, 0, 5)) == utc(2026, 11, 23, 9, 0, 20)
