import datetime

from mesc.timestamps import utc_now


def test_utc_now_is_iso_8601_utc_to_the_second():
    s = utc_now()
    t = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) < 5
