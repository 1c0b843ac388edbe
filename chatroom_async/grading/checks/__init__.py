"""The graded checks, one module per exercise; collected only by `chatroom-async grade`
(with its own `pytest.ini`), never by the project's test suite."""
