"""The demo's importers, discovered by djsync at start-up."""

import djsync

from .models import Category, Department, Employee, Product


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
