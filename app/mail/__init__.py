"""Email: planned from the order outbox, sent by a worker in every server process (ADR 0013).

- ``planner.py``: the outbox consumer. An order event becomes rows in ``emails``, one per
  (event, recipient, kind), rendered once; replays plan nothing new.
- ``reminders.py``: the ``reminder`` mail, planned by the sweeper in the transaction that
  claims the reminder (``app.use_cases.reminders``), not from the outbox.
- ``rendering.py``: amounts in the order's currency, and the Jinja2 templates
  (``templates/``, HTML autoescaped) that make a mail's subject, text and HTML.
- ``mailer.py``: the worker. It claims due rows with ``SKIP LOCKED``, sends them over SMTP,
  and marks each sent, failed or due again later, in the claim's transaction.
- ``smtp.py``: ``TEAMCART_SMTP_URL`` read into its parts, the MIME message, the SMTP session.
- ``users.py``: the ``users`` table (who a person said they are, and their address).
- ``catcher.py``: the embedded default, an SMTP server that keeps what it receives in the data
  folder, which ``GET /dev/mail`` lists.
"""
