"""Django admin for Haven operators. Deauthorization goes through the same service as the console."""
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.domains import DomainRefused, domain_normalize, domain_owner, verified_domains_change
from accounts.models import AuditEvent, Device, DeviceToken, Group, Organization, SamlSettings, User
from accounts.services import device_deauthorize, device_reauthorize


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "uuid", "created_at")
    search_fields = ("name", "slug")
    readonly_fields = ("uuid",)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("email",)
    list_display = ("email", "organization", "role", "is_active", "is_staff")
    list_filter = ("organization", "role", "is_active")
    search_fields = ("email", "full_name")
    readonly_fields = ("uuid", "scim_id", "date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password", "uuid")}),
        ("Profile", {"fields": ("full_name", "organization", "role")}),
        ("Status", {"fields": ("is_active", "is_staff", "is_superuser", "date_joined", "last_login")}),
        ("SCIM", {"fields": ("scim_id", "scim_external_id", "scim_username")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "organization", "role", "password1", "password2")}),)
    filter_horizontal = ()


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "uuid")
    list_filter = ("organization",)
    filter_horizontal = ("members",)


def _operator_label(request) -> str:
    return f"admin:{request.user.email}"


@admin.action(description="Deauthorize selected devices (revokes their tokens)")
def deauthorize_devices(modeladmin, request, queryset):
    for device in queryset:
        device_deauthorize(device=device, actor=None, actor_label=_operator_label(request))
    messages.success(request, f"Deauthorized {queryset.count()} device(s).")


@admin.action(description="Reauthorize selected devices (their agents must enroll again)")
def reauthorize_devices(modeladmin, request, queryset):
    for device in queryset:
        device_reauthorize(device=device, actor=None, actor_label=_operator_label(request))
    messages.success(request, f"Reauthorized {queryset.count()} device(s).")


class DeviceTokenInline(admin.TabularInline):
    model = DeviceToken
    fields = ("created_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "organization", "os", "agent_version", "last_seen_at", "authorized")
    list_filter = ("organization", "authorized")
    search_fields = ("name", "owner__email", "uuid")
    readonly_fields = ("uuid", "organization", "owner", "enrolled_at", "last_seen_at", "authorized", "deauthorized_at")
    actions = [deauthorize_devices, reauthorize_devices]
    inlines = [DeviceTokenInline]

    def has_add_permission(self, request):
        return False  # devices come from agent enrollment only


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "organization", "actor_label", "action", "target_type", "target_uuid")
    list_filter = ("organization", "action")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SamlSettingsForm(forms.ModelForm):
    class Meta:
        model = SamlSettings
        fields = ["verified_domains"]

    def clean_verified_domains(self):
        try:
            domains = [domain_normalize(d) for d in self.cleaned_data["verified_domains"].split(",") if d.strip()]
        except DomainRefused as refused:
            raise forms.ValidationError(str(refused)) from None
        for domain in domains:
            owner = domain_owner(domain, other_than=self.instance.organization)
            if owner is not None:
                raise forms.ValidationError(f"{domain} is verified for another organization ({owner.name})")
        return ",".join(domains)


@admin.register(SamlSettings)
class SamlSettingsAdmin(admin.ModelAdmin):
    """Operators record verified domains here (or with `manage.py verifydomain`); the organization's
    own administrators configure the rest of single sign-on in the console."""

    form = SamlSettingsForm
    list_display = ("organization", "enabled", "idp_entity_id", "verified_domains")
    readonly_fields = ("organization", "enabled", "idp_entity_id", "jit_enabled", "updated_at")
    fields = ("organization", "verified_domains", "enabled", "idp_entity_id", "jit_enabled", "updated_at")

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        wanted = obj.domains()
        current = SamlSettings.objects.get(pk=obj.pk).domains()
        verified_domains_change(organization=obj.organization, add=[d for d in wanted if d not in current],
                                remove=[d for d in current if d not in wanted], actor_label=f"admin {request.user.email}")
