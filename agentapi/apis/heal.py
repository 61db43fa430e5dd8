"""Self-healing: which files the archive's agent should read and send again (archives/healing.py)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agentapi.schema import ARCHIVE_ID, AUTHENTICATED, errors
from archives.healing import heal_path_ids
from archives.selectors import archive_for_device


class HealApi(APIView):
    """Keyed path ids whose stored data was found damaged: the agent forgets its cache entries for
    those files and re-reads them on its next backup, which re-sends the blocks the server dropped."""

    class OutputSerializer(serializers.Serializer):
        path_ids = serializers.ListField(child=serializers.CharField(max_length=64))

        class Meta:
            ref_name = "HealPaths"

    @extend_schema(operation_id="heal_paths", parameters=[ARCHIVE_ID], responses={200: OutputSerializer,
                                                                                   **errors(*AUTHENTICATED)})
    def get(self, request, archive_id):
        archive = archive_for_device(request.user.device, archive_id, write=True)
        return Response({"path_ids": heal_path_ids(archive)})
