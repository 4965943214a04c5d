SELECT DISTINCT ON (s."customer_id")
  CAST(s."customer_id" AS TEXT) AS "id",
  s."email" AS "email"
FROM (
  SELECT
    customer_id,
    email
  FROM customers
  WHERE
    lifetime_value > 100
) AS s
WHERE
  NOT s."customer_id" IS NULL
