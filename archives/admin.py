from django.contrib import admin

from archives.models import Archive


@admin.register(Archive)
class ArchiveAdmin(admin.ModelAdmin):
    list_display = ("uuid", "organization", "user", "device", "created_at")
    list_filter = ("organization",)
    readonly_fields = ("uuid", "organization", "user", "device", "created_at")

    def has_add_permission(self, request):
        return False
