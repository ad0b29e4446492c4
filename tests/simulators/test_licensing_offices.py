"""The simulated licensing office names the office handling each application (office_code): the
one-stop office, or for the permits delegated to the camat often the applicant's kecamatan office."""

from __future__ import annotations

from contract.departments import load_departments
from simulators.kit import kecamatan_of
from simulators.licensing import AT_KECAMATAN, DELEGATED, ONE_STOP
from tests.simulators.test_simulate import REGIONS, take

DEPARTMENTS = load_departments()


def test_each_application_is_handled_by_the_one_stop_office_or_its_kecamatan_office():
    batch = take(4000, seed=3)
    created = [c.after for c in batch if c.op == "c"]
    at_kecamatan = [a for a in created if a["office_code"] != ONE_STOP]
    for application in at_kecamatan:
        office = DEPARTMENTS[application["office_code"]]
        assert office["kind"] == "kecamatan" and application["permit_type"] in DELEGATED
        assert office["name"] == f"Kecamatan {REGIONS[kecamatan_of(application['village_code'])]['name']}"
    delegated = [a for a in created if a["permit_type"] in DELEGATED]
    assert abs(len(at_kecamatan) / len(delegated) - AT_KECAMATAN) < 0.05
    assert len({a["office_code"] for a in at_kecamatan}) > 20  # kecamatan offices all over the regency
    # The office stays with the application through verification and decision.
    offices = {a["application_id"]: a["office_code"] for a in created}
    assert all(c.after["office_code"] == offices[c.key] for c in batch if c.op == "u")
