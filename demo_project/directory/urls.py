"""URLs of the directory's JSON API (included under ``directory/`` by the project)."""

from django.urls import path

from .resources import RESOURCES
from .views import BatchView, CollectionView, ItemView

app_name = "directory"

urlpatterns = [
    url
    for name in RESOURCES
    for url in (
        path(f"api/{name}/", CollectionView.as_view(resource_name=name), name=name),
        path(f"api/{name}/batch/", BatchView.as_view(resource_name=name), name=f"{name}-batch"),
        path(f"api/{name}/<int:pk>/", ItemView.as_view(resource_name=name), name=f"{name}-item"),
    )
]
