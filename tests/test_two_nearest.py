"""The two nearest distinct cells: exact within the radius, never underestimated beyond it."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from synthetic import touching_cells
from test_weights import label_images
from tileunet.two_nearest import two_nearest


def test_two_nearest_is_exact_without_cutoff():
    _, labels = touching_cells((30, 40), n_cells=6, radius=6, seed=3)
    d1, d2 = two_nearest(labels)
    ids = np.unique(labels[labels > 0])
    dist = np.sort(np.stack([ndimage.distance_transform_edt(labels != i) for i in ids]), axis=0)
    assert np.allclose(d1, dist[0], atol=1e-5) and np.allclose(d2, dist[1], atol=1e-5)
    assert (d1[labels > 0] == 0).all()


@settings(max_examples=80, deadline=None)
@given(labels=label_images(), spacing=st.sampled_from([(1.0, 1.0), (0.5, 1.3), (2.0, 0.7)]),
       radius=st.floats(0.0, 30.0))
def test_two_nearest_is_exact_within_the_radius_and_never_underestimates(labels, spacing, radius):
    d1, d2 = two_nearest(labels, spacing, radius)
    ids = np.unique(labels[labels > 0])
    dist = np.full((max(len(ids), 2),) + labels.shape, np.inf)
    if len(ids):
        dist[: len(ids)] = np.sort(np.stack([ndimage.distance_transform_edt(labels != i, sampling=spacing)
                                             for i in ids]), axis=0)
    within = dist[0] + dist[1] <= radius
    np.testing.assert_allclose(d1[within], dist[0][within], atol=1e-5)
    np.testing.assert_allclose(d2[within], dist[1][within], atol=1e-5)
    assert (d1 >= dist[0] - 1e-5).all() and (d2 >= dist[1] - 1e-5).all()
