"""SCIM 2.0 endpoints: django-scim2's views, scoped to the token's organization and made to
answer like RFC 7644 asks (every error a SCIM error document, lists with totalResults).

What changes from django-scim2, and why:
- `get_object`/`get_many` start from the org-scoped selector (django-scim2 queries the whole table);
- errors carry `status` as a string and a `scimType`; malformed JSON is 400 invalidSyntax;
- /.search (root and per type) works without a filter and honours `attributes` in its body;
- /Schemas and /ResourceTypes are ListResponses with totalResults and answer unknown ids with 404;
- any other URL under /scim/v2/ is a SCIM 404, not the console's HTML page.
"""
import json
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from django_scim import constants, views
from django_scim.exceptions import BadRequestError, NotFoundError, SCIMException
from django_scim.utils import get_group_adapter, get_user_adapter

from console.scim.auth import ScimTokenAuth, scim_error_response
from console.scim.documents import json_depth_check
from console.scim.filters import UnknownFilterAttribute
from console.scim.schemas import MAX_RESULTS, published_schemas
from console.scim.selectors import scim_queryset

logger = logging.getLogger(__name__)


def _scim_json(document: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(document), status=status, content_type=constants.SCIM_CONTENT_TYPE)


def _list_response(resources: list, total: int, start: int) -> HttpResponse:
    return _scim_json({"schemas": [constants.SchemaURI.LIST_RESPONSE], "totalResults": total,
                       "itemsPerPage": len(resources), "startIndex": start, "Resources": resources})


class HavenScimView(views.SCIMView):
    """Bearer-token auth around everything, and one rendering of errors."""

    @method_decorator(csrf_exempt)
    @method_decorator(ScimTokenAuth)
    def dispatch(self, request, *args, **kwargs):
        if not self.implemented:
            return scim_error_response(501, "Not implemented by Haven")
        try:
            response = View.dispatch(self, request, *args, **kwargs)
        except SCIMException as error:
            return scim_error_response(error.status, error.detail, error.scim_type)
        except RequestDataTooBig:
            return scim_error_response(413, "The body is too large")
        except SuspiciousOperation as error:  # e.g. more query parameters than Django parses
            return scim_error_response(400, str(error) or "The request was refused", "invalidSyntax")
        except DataError:  # a value the database cannot hold or compare (a NUL byte, a lone surrogate)
            return scim_error_response(400, "A value in the request cannot be stored or searched", "invalidValue")
        except Exception:  # noqa: BLE001 - a SCIM client gets a SCIM error, never a traceback
            logger.exception("SCIM request failed")
            return scim_error_response(500, "The request could not be completed")
        if response.status_code == 405:
            return scim_error_response(405, f"{request.method} is not allowed here")
        return response

    def load_body(self, body: bytes) -> dict:
        try:
            text = body.decode(constants.ENCODING)
            json_depth_check(text)
            document = json.loads(text or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise BadRequestError(f"The body is not valid JSON: {error}", scim_type="invalidSyntax")
        if not isinstance(document, dict):
            raise BadRequestError("The body must be a JSON object", scim_type="invalidSyntax")
        return document


def _page(source) -> tuple[int, int]:
    """RFC 7644 §3.4.2.4: startIndex below 1 counts as 1; count is capped, never negative."""
    try:
        start = int(source.get("startIndex") or 1)
        count = int(source.get("count") if source.get("count") is not None else MAX_RESULTS)
    except (TypeError, ValueError):
        raise BadRequestError("startIndex and count must be integers", scim_type="invalidValue")
    return max(start, 1), min(max(count, 0), MAX_RESULTS)


class ResourceView(HavenScimView):
    """Users or Groups of the token's organization, and only those."""

    prefetch: tuple[str, ...] = ()  # what each listed document reads, fetched once per page

    def scoped(self):
        return scim_queryset(self.model_cls, self.request.scim_organization)

    def get_object(self):
        obj = self.scoped().filter(scim_id=self.kwargs["uuid"]).first()
        if obj is None:
            raise NotFoundError(self.kwargs["uuid"])  # the same answer for "absent" and "another org's"
        return obj

    def matching(self, request, query: str | None) -> list:
        """Rows of the org matching a SCIM filter; the SQL carries the org scope (filters.py)."""
        if not query:
            return list(self.scoped().order_by("scim_id").prefetch_related(*self.prefetch))
        return list(self.__class__.parser_getter().search(query, request).prefetch_related(*self.prefetch))

    def get_many(self, request):
        rows = self.matching(request, request.GET.get("filter"))
        start, count = _page(request.GET)
        page = rows[start - 1:start - 1 + count]
        return _list_response([self.scim_adapter(o, request=request).to_dict() for o in page], len(rows), start)


class UsersView(ResourceView, views.UsersView):
    prefetch = ("haven_groups",)


class GroupsView(ResourceView, views.GroupsView):
    pass


class SearchView(HavenScimView):
    """POST .../.search (RFC 7644 §3.4.3): filter, attributes and paging come in the body."""

    http_method_names = ["post"]
    types: tuple = ()  # the resource views searched, in order

    def post(self, request, *args, **kwargs):
        body = self.load_body(request.body)
        if body.get("schemas") != [constants.SchemaURI.SERACH_REQUEST]:
            raise BadRequestError("The body must be a SearchRequest", scim_type="invalidSyntax")
        request.scim_selection = (body.get("attributes"), body.get("excludedAttributes"))
        start, count = _page(body)
        rows, refused = [], []
        for view_class in self.types:
            view = view_class(request=request, kwargs={})
            try:
                rows += [(view.scim_adapter, obj) for obj in view.matching(request, body.get("filter"))]
            except UnknownFilterAttribute as error:
                refused.append(error)  # the root search: Groups have no userName, so none matches
        if len(refused) == len(self.types):
            raise refused[0]
        page = rows[start - 1:start - 1 + count]
        return _list_response([adapter(obj, request=request).to_dict() for adapter, obj in page], len(rows), start)


class UserSearchView(SearchView):
    types = (UsersView,)


class GroupSearchView(SearchView):
    types = (GroupsView,)


class RootSearchView(SearchView):
    types = (UsersView, GroupsView)


class ServiceProviderConfigView(HavenScimView, views.ServiceProviderConfigView):
    pass


class ResourceTypesView(HavenScimView):
    http_method_names = ["get"]

    def get(self, request, uuid=None):
        documents = {adapter.resource_type: adapter.resource_type_dict(request)
                     for adapter in (get_user_adapter(), get_group_adapter())}
        return _one_or_all(documents, uuid)


class SchemasView(HavenScimView):
    http_method_names = ["get"]

    def get(self, request, uuid=None):
        return _one_or_all(published_schemas(request), uuid)


def _one_or_all(documents: dict, key: str | None) -> HttpResponse:
    if key is None:
        return _list_response(list(documents.values()), len(documents), 1)
    if key not in documents:
        raise NotFoundError(key)
    return _scim_json(documents[key])


class NotFoundView(HavenScimView):
    """Unknown URLs under /scim/v2/ answer a SCIM 404 (after authentication: nothing is revealed)."""

    def get(self, request, *args, **kwargs):
        raise NotFoundError(request.path)

    post = put = patch = delete = get
