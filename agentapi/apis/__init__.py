"""Agent endpoints, one module per area: validate input, check access, call one service, serialize
output. The views stay importable from `agentapi.apis` (urls.py and tests use these names)."""
from agentapi.apis.blocks import BlocksFetchApi, BlocksMissingApi, BlocksUploadApi
from agentapi.apis.common import body_limit, run_for
from agentapi.apis.devices import ArchiveApi, ArchiveListApi, DeviceApi
from agentapi.apis.enroll import DeploymentEnrollApi, EnrollApi
from agentapi.apis.events import EventsApi
from agentapi.apis.heal import HealApi
from agentapi.apis.keys import KeyEscrowApi, KeyRetrieveApi, KeyStatusApi
from agentapi.apis.runs import RunFinishApi, RunStartApi
from agentapi.apis.service import DevicePolicyApi, DeviceStatusApi
from agentapi.apis.versions import VersionsApi
from agentapi.exceptions import KeyNotEscrowedError, KeystoreUnavailableError, LengthRequired, PayloadTooLarge
from agentapi.fields import HexBlockIdField
from agentapi.versions_input import MAX_MANIFEST_B64, versions_parse

__all__ = [
    "ArchiveApi", "ArchiveListApi", "BlocksFetchApi", "BlocksMissingApi", "BlocksUploadApi", "DeviceApi", "EnrollApi",
    "DevicePolicyApi", "DeviceStatusApi", "DeploymentEnrollApi", "HealApi", "EventsApi",
    "HexBlockIdField", "KeyEscrowApi", "KeyNotEscrowedError", "KeyRetrieveApi", "KeyStatusApi",
    "KeystoreUnavailableError", "LengthRequired", "MAX_MANIFEST_B64", "PayloadTooLarge", "RunFinishApi",
    "RunStartApi", "VersionsApi", "body_limit", "run_for", "versions_parse",
]
