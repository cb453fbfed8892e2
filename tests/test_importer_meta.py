"""Importer options in ``class Meta``: a field may have any name, Meta is inherited as a
ModelForm's is, unknown options are refused, the old class attributes warn; and the switch
table that the job form, ``runsync`` and the permissions derive from."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models
from django.test.utils import isolate_apps

import djsync
from djsync.engine.apply import apply_plan
from djsync.mapping.fields import Field
from djsync.mapping.importers import Importer, ImporterOptions
from djsync.mapping.memberships import MembershipImporter
from djsync.mapping.registry import unregister
from djsync.mapping.resources import ResourceImporter, importer_from_resource
from djsync.mapping.switches import SWITCH_NAMES, SWITCHES, Switches
from djsync.models import SyncJob, SyncRun
from djsync.sources import FileSource
from tests.testapp.models import Category, Product
from tests.testapp.resources import CategoryResource

# -- a field may have any name -------------------------------------------------------------

#: Model fields named like importer options, each mapped by a Field of the same name.
OPTION_NAMES = ["name", "source", "scope", "keys", "delete", "model", "fields", "create"]

with isolate_apps("tests.testapp"):

    class Thing(models.Model):
        """A legacy table whose columns are named like importer options (not migrated:
        the tests make and drop its table)."""

        code = models.CharField(max_length=10, unique=True)
        name = models.CharField(max_length=50, blank=True)
        source = models.CharField(max_length=50, blank=True)
        scope = models.CharField(max_length=50, blank=True)
        keys = models.IntegerField(null=True)
        delete = models.BooleanField(default=False)
        model = models.CharField(max_length=50, blank=True)
        fields = models.CharField(max_length=50, blank=True)
        create = models.DateField(null=True)

        class Meta:
            app_label = "testapp"
            db_table = "test_importer_meta_thing"


class ThingImporter(Importer):
    name = Field()
    source = Field()
    scope = Field("Scope")  # a column of another name
    keys = Field()
    delete = Field()
    model = Field()
    fields = Field()
    create = Field(required=False)

    class Meta:
        model = Thing
        keys = ["code"]
        fields = ["code"]


@pytest.fixture
def thing_table(transactional_db):
    with connection.schema_editor() as editor:
        editor.create_model(Thing)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(Thing)


def things_csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "things.csv"
    header = "code,name,source,Scope,keys,delete,model,fields,create"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def plan_and_apply(importer_class: type[Importer], path: Path) -> Any:
    importer = importer_class()
    plan = importer.build_plan(FileSource(path), importer_class.default_switches())
    apply_plan(plan, importer)
    return plan


def test_fields_named_like_options_leave_the_options_alone():
    assert set(OPTION_NAMES) <= set(ThingImporter.declared_fields)
    assert ThingImporter.model is Thing and ThingImporter._meta.model is Thing
    assert ThingImporter.keys == ["code"] and ThingImporter.fields == ["code"]
    assert ThingImporter.scope is None and ThingImporter.source is None
    assert ThingImporter.delete is False and ThingImporter.create is True
    assert not hasattr(ThingImporter, "name"), "no Meta.name and not registered"
    switches = ThingImporter.default_switches()
    assert (switches.create, switches.update, switches.delete) == (True, True, False)


def test_fields_named_like_options_are_mapped_and_diffed(thing_table, tmp_path):
    importer = ThingImporter()
    assert sorted(importer.bound_fields) == sorted(["code", *OPTION_NAMES])
    assert importer.bound_fields["scope"].column == "Scope"

    first = things_csv(
        tmp_path,
        "A,Anvil,catalogue,eu,3,yes,X1,all,2026-01-31",
        "B,Bolt,catalogue,eu,1,no,X2,all,",
    )
    plan = plan_and_apply(ThingImporter, first)
    assert plan.counts["created"] == 2
    a = Thing.objects.values().get(code="A")
    assert a["name"] == "Anvil" and a["source"] == "catalogue" and a["scope"] == "eu"
    assert a["keys"] == 3 and a["delete"] is True and a["model"] == "X1" and a["fields"] == "all"
    assert str(a["create"]) == "2026-01-31"

    # B left the file: the delete switch is off (a field called delete does not turn it on).
    again = things_csv(tmp_path, "A,Anvil,catalogue,us,4,no,X1,all,2026-01-31")
    plan = plan_and_apply(ThingImporter, again)
    assert (plan.counts["updated"], plan.counts["deleted"]) == (1, 0)
    (update,) = plan.updates
    assert set(update.changed) == {"scope", "keys", "delete"}
    assert (update.old["scope"], update.new["scope"]) == ("eu", "us")
    rows = Thing.objects.values_list("code", "delete", "keys").order_by("code")
    assert list(rows) == [("A", False, 4), ("B", False, 1)]


class TitledProductImporter(Importer):
    """A registered name in Meta and a field called ``name`` (registered by the test only:
    a second importer of Product would change what the admin's export of Product uses)."""

    name = Field("title")

    class Meta:
        name = "test_meta_products"
        model = Product
        keys = ["sku"]
        fields = ["sku", "price", "qty"]


@pytest.fixture
def titled_products():
    djsync.register(TitledProductImporter)
    yield TitledProductImporter
    unregister("test_meta_products")


def test_a_field_called_name_and_a_registered_name_run_together(
    titled_products, make_job, write_csv
):
    assert TitledProductImporter.name == "test_meta_products"
    assert TitledProductImporter.declared_fields["name"].column == "title"
    job = make_job("test_meta_products")
    path = write_csv([{"sku": "S1", "title": "Saw", "price": "2.50", "qty": "1"}])
    run = djsync.run(job, file=path)
    assert run.status == SyncRun.Status.SUCCEEDED and run.created == 1
    assert Product.objects.get(sku="S1").name == "Saw"
    path = write_csv([{"sku": "S1", "title": "Saw, large", "price": "2.50", "qty": "1"}])
    run = djsync.run(job, file=path)
    assert (run.created, run.updated) == (0, 1)
    assert Product.objects.get(sku="S1").name == "Saw, large"


# -- Meta inheritance, as a Django ModelForm's ------------------------------------------------


class BaseCategories(Importer):
    class Meta:
        model = Category
        keys = ["code"]
        fields = ["code", "name"]
        delete = True
        max_delete = 5


def test_a_subclass_without_meta_keeps_the_parents_options():
    class Child(BaseCategories):
        extra = Field(required=False)

    assert Child._meta.model is Category and Child.keys == ["code"]
    assert Child.delete is True and Child.max_delete == 5
    assert Child._meta.given == BaseCategories._meta.given


def test_a_subclass_meta_extends_the_parents_by_subclassing_it():
    class Child(BaseCategories):
        class Meta(BaseCategories.Meta):
            delete = False
            scope = {"code__startswith": "A"}

    assert Child.model is Category and Child.keys == ["code"] and Child.max_delete == 5
    assert Child.delete is False and Child.scope == {"code__startswith": "A"}
    assert BaseCategories.delete is True and BaseCategories.scope is None


def test_a_subclass_meta_of_its_own_replaces_the_parents():
    class Child(BaseCategories):
        class Meta:
            model = Product
            keys = ["sku"]

    assert Child.model is Product and Child.keys == ["sku"]
    assert Child.delete is False and Child.max_delete is None and Child.fields == ()


def test_unknown_meta_option_names_the_importer_and_the_option():
    with pytest.raises(ImproperlyConfigured) as info:

        class Typo(Importer):
            class Meta:
                model = Category
                kyes = ["code"]

    message = str(info.value)
    assert message.startswith("Typo.Meta: unknown option 'kyes'; did you mean 'keys'?")
    assert "options: " in message and "max_delete" in message


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("keys", "code", "Bad: keys is a list of field names, e.g. keys = ['code']"),
        ("fields", "code", "Bad: fields is a list of field names or \"__all__\", not 'code'"),
        ("on_row_error", "ignore", 'Bad: on_row_error is "fail" or "skip", not \'ignore\''),
    ],
)
def test_option_values_checked_when_the_class_is_made(option, value, message):
    with pytest.raises(ImproperlyConfigured, match="^" + re.escape(message) + "$"):
        type("Bad", (Importer,), {"Meta": type("Meta", (), {"model": Category, option: value})})


# -- the old style: class attributes, deprecated ----------------------------------------------


def test_options_as_class_attributes_warn_and_still_work(db, tmp_path):
    with pytest.warns(DeprecationWarning) as caught:

        class OldStyle(Importer):
            model = Category
            keys = ["code"]
            fields = ["code", "name"]
            delete = True

    (warning,) = caught
    assert str(warning.message).startswith(
        "OldStyle: move delete, fields, keys, model into class Meta"
    )
    assert warning.filename == __file__, "points at the class statement"
    assert OldStyle._meta.model is Category and OldStyle._meta.delete is True
    assert OldStyle.delete is True and OldStyle.keys == ["code"]

    Category.objects.create(code="OLD", name="Gone")
    path = tmp_path / "cats.csv"
    path.write_text("code,name\nNEW,Kept\n")
    importer = OldStyle()
    plan = importer.build_plan(FileSource(path), OldStyle.default_switches())
    assert (plan.counts["created"], plan.counts["deleted"]) == (1, 1)


def test_a_subclass_meta_keeps_the_old_style_parents_options():
    with pytest.warns(DeprecationWarning):

        class OldParent(Importer):
            model = Category
            keys = ["code"]
            delete = True

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only the class that has them warns

        class NewChild(OldParent):
            class Meta:
                fields = ["code", "name"]

        class Grandchild(NewChild):
            pass

    for cls in (NewChild, Grandchild):
        assert cls.model is Category and cls.delete is True and cls.fields == ["code", "name"]


def test_meta_beats_a_class_attribute_of_the_same_class():
    with pytest.warns(DeprecationWarning, match="Both: move delete into class Meta"):

        class Both(Importer):
            delete = True

            class Meta:
                model = Category
                keys = ["code"]
                delete = False

    assert Both.delete is False


# -- helpers that take options of their own ----------------------------------------------------


def test_resource_importer_options_in_meta():
    class Categories(ResourceImporter):
        class Meta:
            resource_class = CategoryResource
            delete = True

    assert Categories.resource_class is CategoryResource
    assert Categories.model is Category and list(Categories.keys) == ["code"]
    assert Categories.delete is True and "model" not in Categories._meta.given

    class Narrower(Categories):
        pass

    assert Narrower.model is Category and Narrower.resource_class is CategoryResource

    built = importer_from_resource(CategoryResource, register_it=False, max_delete=3)
    assert built._meta.resource_class is CategoryResource and built.max_delete == 3
    with pytest.raises(TypeError, match="unknown importer options: relation"):
        importer_from_resource(CategoryResource, register_it=False, relation="x")


def test_membership_importer_deletes_by_default_and_takes_the_relation_in_meta():
    class Members(MembershipImporter):
        class Meta:
            relation = "testapp.Team.members"
            group_lookup = "code"

    assert Members.delete is True and Members._meta.relation == "testapp.Team.members"
    assert Members.model is Members._meta.model and Members.keys == ["team", "employee"]
    assert Members.declared_fields["team"].lookup == "code"
    with pytest.raises(ImproperlyConfigured, match="unknown option 'relation'"):

        class NotAMembership(Importer):
            class Meta:
                relation = "testapp.Team.members"


def test_options_classes_list_every_switch_an_importer_may_set():
    names = ImporterOptions.option_names()
    assert {s.name for s in SWITCHES if s.importer_option} <= names
    assert "force" not in names, "force is for one run, not an importer's default"


# -- the switch list, defined once -------------------------------------------------------------


def test_the_switch_table_is_the_switches_dataclass():
    assert SWITCH_NAMES == tuple(f.name for f in dataclasses.fields(Switches))
    from djsync.mapping.importers import Switches as reexported

    assert reexported is Switches


def test_every_switch_has_its_job_field_form_field_and_runsync_flag():
    from djsync.forms import SyncJobForm
    from djsync.management.commands.runsync import Command

    form = SyncJobForm()
    parser = Command().create_parser("manage.py", "runsync")
    flags = {option for action in parser._actions for option in action.option_strings}
    for switch in SWITCHES:
        assert switch.flag in flags, switch.name
        if switch.job_field is not None:
            SyncJob._meta.get_field(switch.job_field)
            assert switch.job_field in form.fields, switch.name
            assert str(form.fields[switch.job_field].help_text), switch.name
    # e.g. max_delete: a job field, a form field and a flag, all from one entry.
    (max_delete,) = [s for s in SWITCHES if s.name == "max_delete"]
    assert "max_delete" in form.fields and "--max-delete" in flags
    options = parser.parse_args(["--max-delete", "3", "--skip-errors", "--no-create"])
    from djsync.mapping.switches import flag_options

    given = flag_options(vars(options))
    assert given["max_delete"] == 3 and given["on_row_error"] == "skip"
    assert given["create"] is False and given["force"] is None and given["update"] is None
    assert max_delete.kind == "limit"


def test_apply_permissions_follow_the_action_switches():
    from djsync.permissions import ACTION_PERMISSION

    actions = {s.action: s.permission for s in SWITCHES if s.kind == "action"}
    assert (
        ACTION_PERMISSION == actions == {"created": "add", "updated": "change", "deleted": "delete"}
    )
    allowed = Switches(create=True, update=False, delete=True).allowed_actions()
    assert allowed == {"created": True, "updated": False, "deleted": True}
