"""Assertions the runtime tests of several backends share."""


def assert_same_decisions(ref, test, images, th=0.5):
    """Both pipelines at the same thresholds take the same exits with (almost) the same labels:
    another backend or device must not change what the policy decides."""
    for k in range(len(ref.exit_names)):
        for p in (ref, test):
            p.set_thresholds(k, th_pix=th, th_img=th)
    a, b = ref(images), test(images)
    assert [r.exit for r in a] == [r.exit for r in b]
    for ra, rb in zip(a, b):
        assert (ra.labels == rb.labels).mean() > 0.999
