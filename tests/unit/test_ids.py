import uuid

from hypothesis import given
from hypothesis import strategies as st

from models.ids import name_uuid


@given(st.uuids(), st.text(max_size=300))
def test_name_uuid_is_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert name_uuid(namespace, name) == str(uuid.uuid5(namespace, name))
