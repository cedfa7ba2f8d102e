"""DELETE of studies, series and instances (non-standard, for authorised users)."""

from __future__ import annotations

from tests.web.conftest import make_study


def test_delete_instance_series_and_study(web_node, http, dicomweb):
    datasets = make_study(series_count=2, instances_per_series=2)
    dicomweb.store_instances(datasets)
    a = datasets[0]
    instance = http.delete(
        f"/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}/instances/{a.SOPInstanceUID}"
    )
    assert instance.status_code == 200 and instance.json()["instances"] == 1
    assert not web_node.archive.contains(a.SOPInstanceUID)
    series = http.delete(f"/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}")
    assert series.json()["instances"] == 1
    study = http.delete(f"/studies/{a.StudyInstanceUID}")
    assert study.json()["instances"] == 2
    assert http.get(f"/studies/{a.StudyInstanceUID}/metadata").status_code == 404
    assert http.delete(f"/studies/{a.StudyInstanceUID}").status_code == 404


def test_delete_with_dicomweb_client(dicomweb):
    ds = make_study(instances_per_series=1)[0]
    dicomweb.store_instances([ds])
    dicomweb.delete_study(ds.StudyInstanceUID)
    assert (
        dicomweb.search_for_studies(search_filters={"StudyInstanceUID": ds.StudyInstanceUID}) == []
    )


def test_series_of_another_study_is_not_deleted(web_node, http, dicomweb):
    one, two = make_study(instances_per_series=1), make_study(instances_per_series=1)
    dicomweb.store_instances(one + two)
    response = http.delete(f"/studies/{one[0].StudyInstanceUID}/series/{two[0].SeriesInstanceUID}")
    assert response.status_code == 404
    assert web_node.archive.contains(two[0].SOPInstanceUID)
