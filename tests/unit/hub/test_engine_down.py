"""A spawn while no Docker engine answers tells the student why, on every page JupyterHub shows it on."""

from jupyterhub.utils import format_exception

from d2lhub.hub.spawner import ENGINE_DOWN_MESSAGE, EngineDown


def test_engine_down_reaches_the_spawn_page_and_the_progress_bar():
    error = EngineDown()
    assert error.status_code == 503  # an HTTPError: the spawn page shows it when the spawn fails in its first second
    assert error.log_message == ENGINE_DOWN_MESSAGE  # ... as the error page's message
    assert format_exception(error) == (ENGINE_DOWN_MESSAGE, None)  # the progress bar and the pending page
    assert format_exception(error, only_jupyterhub=True)[0] == ENGINE_DOWN_MESSAGE
