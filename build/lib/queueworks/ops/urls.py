from django.urls import path

from queueworks.ops import views

app_name = "ops"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("api/snapshot/", views.snapshot, name="snapshot"),
    path("failures/", views.failures, name="failures"),
    path("programs/<str:name>/<str:action>/", views.program_action, name="program-action"),
    path("tasks/<str:task_id>/rerun/", views.task_rerun, name="task-rerun"),
    path("dead-letters/<str:letter_id>/requeue/", views.dead_letter_requeue,
         name="dead-letter-requeue"),
    path("dead-letters/<str:letter_id>/discard/", views.dead_letter_discard,
         name="dead-letter-discard"),
]
