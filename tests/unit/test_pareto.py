"""The Pareto front of latency and error on hand-made points."""
from edge_age.report.bench_page import pareto_front


def test_pareto_front_on_hand_made_points():
    points = [(1.0, 5.0), (2.0, 4.0), (2.0, 4.5), (3.0, 4.0), (0.5, 9.0), (4.0, 3.0), (5.0, 3.0), (1.0, 5.0)]
    assert pareto_front(points) == [True, True, False, False, True, True, False, True]
    assert pareto_front([(1.0, 1.0)]) == [True]
    assert pareto_front([]) == []
