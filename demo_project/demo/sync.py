"""The demo's importers, discovered by djsync at start-up."""

from django.db import models
from django.db.models import Case, CharField, Value, When
from django.db.models.functions import Cast, Concat, Lower

import djsync

from .models import Category, Department, Employee, Product
from .targets import DirectoryAccounts, DirectoryGroups, DirectoryMemberships


@djsync.register
class CategoryImporter(djsync.Importer):
    class Meta:
        name = "categories"
        model = Category
        keys = ["code"]
        fields = ["code", "name"]


@djsync.register
class ProductImporter(djsync.Importer):
    category = djsync.Field("category_code", lookup="code")

    class Meta:
        name = "products"
        model = Product
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "updated", "active"]
        delete = True


@djsync.register
class DepartmentImporter(djsync.Importer):
    class Meta:
        name = "departments"
        model = Department
        keys = ["code"]
        fields = ["code", "name"]


@djsync.register
class EmployeeImporter(djsync.Importer):
    department = djsync.Field("dept", lookup="code")

    class Meta:
        name = "employees"
        model = Employee
        keys = ["department", "number"]
        fields = ["number", "name", "email", "hired", "salary", "status", "last_login"]
        delete = True
        #: day2/employees.json writes day-first dates (31/12/2019); ISO is always accepted.
        date_formats = ["%d/%m/%Y"]

    def normalize_source_row(self, values: dict) -> dict:
        values["email"] = values["email"].lower()
        return values


# -- the demo's staff into the directory (an external system behind a JSON API) -----------
def staff() -> models.QuerySet[Employee]:
    """Every employee as a directory account: a username from department and number."""
    return Employee.objects.select_related("department").annotate(
        username=Concat(Lower("department__code"), Value("-"), Cast("number", CharField())),
        is_active=Case(When(status=Employee.Status.ACTIVE, then=True), default=False),
    )


STAFF_COLUMNS = {
    "username": "username",
    "email": "email",
    "full_name": "name",
    "active": "is_active",
    "dept": "department__code",
    "department_name": "department__name",
}


@djsync.register
class DirectoryAccountImporter(djsync.Importer):
    full_name = djsync.Field()
    department = djsync.Field("dept", converter=str.lower)

    class Meta:
        name = "directory-accounts"
        target = DirectoryAccounts
        keys = ["username"]
        fields = ["username", "email", "full_name", "active", "department"]
        delete = True
        querysets = {"staff": {"queryset": staff, "fields": STAFF_COLUMNS}}

    def normalize_source_row(self, values: dict) -> dict:
        values["email"] = values["email"].lower()
        return values


@djsync.register
class DirectoryGroupImporter(djsync.Importer):
    """One group per department, derived from the staff (the departments they work in)."""

    name = djsync.Field(converter=str.lower)

    class Meta:
        name = "directory-groups"
        target = DirectoryGroups
        keys = ["name"]
        fields = ["name", "description"]
        delete = True


@djsync.register
class DirectoryMembershipImporter(djsync.Importer):
    """Each account in its department's group."""

    group = djsync.Field(converter=str.lower)

    class Meta:
        name = "directory-memberships"
        target = DirectoryMemberships
        keys = ["account", "group"]
        fields = ["account", "group"]
        delete = True
