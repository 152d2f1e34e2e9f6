"""Payment history is append-only in the database itself, not just in the admin: UPDATE and DELETE of a
PaymentEvent row raise an error whoever runs them (ORM, raw SQL, a psql session). TRUNCATE stays possible
for test databases and deliberate maintenance."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION payments_paymentevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment history is append-only: % on payments_paymentevent is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER payments_paymentevent_append_only
    BEFORE UPDATE OR DELETE ON payments_paymentevent
    FOR EACH ROW EXECUTE FUNCTION payments_paymentevent_append_only();
"""

BACKWARD = """
DROP TRIGGER payments_paymentevent_append_only ON payments_paymentevent;
DROP FUNCTION payments_paymentevent_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
