"""Keys: escrow status, the first device's escrow, and delivery to a replacement computer."""
import base64
import binascii

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.apis.common import body_limit
from agentapi.exceptions import KeystoreUnavailableError
from agentapi.fields import Base64Field
from agentapi.schema import body_errors, errors
from formats.keys import key_id_for
from keystore.models import UserKey
from keystore.selectors import escrowed_key_of
from keystore.services import KeyConflict, KeyInvalid, KeyNotEscrowed, key_deliver_to_device, key_escrow
from keystore.vault import KeystoreUnavailable


def _keystore_call(call):
    try:
        return call()
    except KeystoreUnavailable as error:
        raise KeystoreUnavailableError(f"The keystore is unavailable ({error.reason}); try again later") from None


class KeyStatusApi(APIView):
    """Does the calling device's user have an escrowed key, and which (by key_id)?"""

    class OutputSerializer(serializers.Serializer):
        key_id = serializers.CharField(allow_null=True, help_text="null when no escrow was started")
        escrowed = serializers.BooleanField()

        class Meta:
            ref_name = "KeyStatus"

    @extend_schema(operation_id="key_status", responses={200: OutputSerializer, **errors(401)})
    def get(self, request):
        row = escrowed_key_of(request.user.user)
        return Response({"key_id": row.key_id if row else None,
                         "escrowed": bool(row and row.state == UserKey.State.ESCROWED)})


class KeyEscrowApi(APIView):
    """The first device of a user escrows the key it generated. Idempotent for the same key."""

    class InputSerializer(serializers.Serializer):
        key = Base64Field(max_length=64, write_only=True)
        key_id = serializers.RegexField(r"^[0-9a-f]{32}$")

        class Meta:
            ref_name = "KeyEscrowRequest"

    class OutputSerializer(serializers.Serializer):
        key_id = serializers.CharField()
        escrowed = serializers.BooleanField()

        class Meta:
            ref_name = "KeyEscrowed"

    @extend_schema(operation_id="key_escrow", request=InputSerializer,
                   responses={201: OutputSerializer, **body_errors(409, 503)})
    def post(self, request):
        body_limit(request, 4096)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            key = base64.b64decode(data.validated_data["key"], validate=True)
        except (binascii.Error, ValueError):
            raise exceptions.ValidationError({"key": ["must be base64"]}) from None
        device = request.user.device
        try:
            row = _keystore_call(lambda: key_escrow(user=device.owner, key=key, key_id=data.validated_data["key_id"],
                                                    device=device))
        except KeyInvalid as invalid:
            raise exceptions.ValidationError({"key": [str(invalid)]}) from None
        except KeyConflict:
            return Response({"detail": "A different key is already escrowed for this user. This device will not "
                                       "back up; contact your administrator.", "code": "key_conflict"}, status=409)
        return Response({"key_id": row.key_id, "escrowed": True}, status=status.HTTP_201_CREATED)


class KeyRetrieveApi(APIView):
    """Computer replacement: a new device of the user receives the escrowed key (audited, notified)."""

    class OutputSerializer(serializers.Serializer):
        key = Base64Field(help_text="The user key K, base64")
        key_id = serializers.CharField()

        class Meta:
            ref_name = "UserKey"

    @extend_schema(operation_id="key_retrieve", request=None,
                   responses={200: OutputSerializer, **errors(401, 404, 503)})
    def post(self, request):
        device = request.user.device
        try:
            key = _keystore_call(lambda: key_deliver_to_device(device=device))
        except KeyNotEscrowed:
            return Response({"detail": "No key is escrowed for this user", "code": "key_not_escrowed"}, status=404)
        return Response({"key": base64.b64encode(key).decode(), "key_id": key_id_for(key)})
