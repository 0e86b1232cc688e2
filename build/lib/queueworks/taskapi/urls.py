from django.urls import path, re_path

from queueworks.taskapi import views

app_name = "taskapi"


def _alias(pattern: str, view):
    """The same endpoint with/without its trailing slash (APPEND_SLASH cannot
    redirect a POST); left out of the OpenAPI schema."""
    return re_path(pattern, view.as_view(schema=None))


urlpatterns = [
    path("tasks/", views.TaskCollectionView.as_view(), name="task-list"),
    path("tasks/allowed/", views.AllowedTasksView.as_view(), name="task-allowed"),
    path("tasks/<str:task_id>/", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<str:task_id>/cancel", views.TaskCancelView.as_view(), name="task-cancel"),
    path("tasks/<str:task_id>/rerun", views.TaskRerunView.as_view(), name="task-rerun"),
    path("workers/", views.WorkersView.as_view(), name="worker-list"),
    path("queues/", views.QueuesView.as_view(), name="queue-list"),
    _alias(r"^tasks$", views.TaskCollectionView),
    _alias(r"^tasks/allowed$", views.AllowedTasksView),
    _alias(r"^tasks/(?P<task_id>[^/]+)$", views.TaskDetailView),
    _alias(r"^tasks/(?P<task_id>[^/]+)/cancel/$", views.TaskCancelView),
    _alias(r"^tasks/(?P<task_id>[^/]+)/rerun/$", views.TaskRerunView),
    _alias(r"^workers$", views.WorkersView),
    _alias(r"^queues$", views.QueuesView),
]
