"""Admin of the directory, so the demo shows what a sync wrote into the "external system"."""

from django.contrib import admin

from .models import Account, Group, Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["group"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["username", "full_name", "email", "department", "active", "updated_at"]
    list_filter = ["active", "department"]
    search_fields = ["username", "full_name", "email"]
    inlines = [MembershipInline]


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["account", "group"]
    list_filter = ["group"]
    autocomplete_fields = ["account", "group"]
