//! The one expression builder: hands out `#nN` placeholders for attribute names and `:vN`
//! placeholders for values, and builds update (`SET`/`ADD`/`REMOVE`), condition, key
//! condition, filter and projection expressions from them. Every DynamoDB call with an
//! expression goes through it, so no attribute name is ever spliced into an expression
//! (reserved words, `#` in names) and placeholders never collide.
//!
//! [`Expr::finish`] gives the strings and the name/value maps as [`Expression`], which
//! feeds an UpdateItem, a Query, or a TransactWriteItems `Update`/`ConditionCheck` alike.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// A value placeholder (`:vN`) handed out by [`Expr::value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRef(String);

impl std::fmt::Display for ValueRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default, Clone)]
pub struct Expr {
    names: HashMap<String, String>,
    /// attribute -> its placeholder, so an attribute named twice gets one placeholder.
    placeholders: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    conditions: Vec<String>,
}

/// A finished expression: strings (absent when empty) and the maps they refer to (`None`
/// when empty: DynamoDB refuses an empty map).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expression {
    pub update: Option<String>,
    pub condition: Option<String>,
    pub names: Option<HashMap<String, String>>,
    pub values: Option<HashMap<String, AttributeValue>>,
}

impl Expr {
    pub fn new() -> Self {
        Self::default()
    }

    /// The placeholder of `attribute` (the same one each time it is named).
    pub fn name(&mut self, attribute: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.placeholders.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        self.placeholders
            .insert(attribute.to_owned(), placeholder.clone());
        placeholder
    }

    /// A new placeholder for `value`.
    pub fn value(&mut self, value: AttributeValue) -> ValueRef {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        ValueRef(placeholder)
    }

    /// `SET attribute = value`.
    pub fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let value = self.value(value);
        self.set_to(attribute, &value)
    }

    /// `SET attribute = <placeholder>` with a value placeholder already handed out.
    pub fn set_to(&mut self, attribute: &str, value: &ValueRef) -> &mut Self {
        let name = self.name(attribute);
        self.set.push(format!("{name} = {value}"));
        self
    }

    /// A `SET` clause computed from placeholders already handed out (`list_append(...)`).
    pub fn set_clause(&mut self, clause: String) -> &mut Self {
        self.set.push(clause);
        self
    }

    /// `SET attribute = if_not_exists(attribute, value)`: only when it has none yet.
    pub fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let value = self.value(value);
        self.set_if_absent_to(attribute, &value)
    }

    pub fn set_if_absent_to(&mut self, attribute: &str, value: &ValueRef) -> &mut Self {
        let name = self.name(attribute);
        self.set
            .push(format!("{name} = if_not_exists({name}, {value})"));
        self
    }

    /// `ADD attribute value` (numbers: increments, creating the attribute at 0).
    pub fn add(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let name = self.name(attribute);
        let value = self.value(value);
        self.add.push(format!("{name} {value}"));
        self
    }

    /// `REMOVE attribute`.
    pub fn remove(&mut self, attribute: &str) -> &mut Self {
        let name = self.name(attribute);
        self.remove.push(name);
        self
    }

    /// Adds one condition; all conditions must hold (they are joined with `AND`).
    pub fn condition(&mut self, condition: String) -> &mut Self {
        self.conditions.push(condition);
        self
    }

    /// `attribute_exists(attribute)`.
    pub fn exists(&mut self, attribute: &str) -> String {
        format!("attribute_exists({})", self.name(attribute))
    }

    /// `attribute_not_exists(attribute)`.
    pub fn not_exists(&mut self, attribute: &str) -> String {
        format!("attribute_not_exists({})", self.name(attribute))
    }

    /// `attribute = value`.
    pub fn equals(&mut self, attribute: &str, value: AttributeValue) -> String {
        let name = self.name(attribute);
        format!("{name} = {}", self.value(value))
    }

    /// `attribute < value` with a value placeholder already handed out.
    pub fn below(&mut self, attribute: &str, value: &ValueRef) -> String {
        format!("{} < {value}", self.name(attribute))
    }

    /// `(attribute_not_exists(attribute) OR attribute < value)`: the guard of a value that
    /// only moves forward.
    pub fn absent_or_below(&mut self, attribute: &str, value: &ValueRef) -> String {
        let absent = self.not_exists(attribute);
        format!("({absent} OR {})", self.below(attribute, value))
    }

    /// `(attribute_not_exists(attribute) OR attribute > value)`: a deadline not yet passed.
    pub fn absent_or_above(&mut self, attribute: &str, value: &ValueRef) -> String {
        let absent = self.not_exists(attribute);
        format!("({absent} OR {} > {value})", self.name(attribute))
    }

    /// `(attribute_not_exists(attribute) OR attribute <= value)`: the guard of a value that
    /// moves forward or stays (setting it to what it is changes nothing, and saves a
    /// refused write on a repeat).
    pub fn absent_or_at_most(&mut self, attribute: &str, value: &ValueRef) -> String {
        let absent = self.not_exists(attribute);
        format!("({absent} OR {} <= {value})", self.name(attribute))
    }

    /// A projection expression of `attributes`.
    pub fn projection<'a>(&mut self, attributes: impl IntoIterator<Item = &'a str>) -> String {
        let names: Vec<String> = attributes.into_iter().map(|a| self.name(a)).collect();
        names.join(", ")
    }

    /// The update expression (`SET ... ADD ... REMOVE ...`), if anything is updated.
    fn update_expression(&self) -> Option<String> {
        let clauses: Vec<String> = [
            ("SET", &self.set),
            ("ADD", &self.add),
            ("REMOVE", &self.remove),
        ]
        .into_iter()
        .filter(|(_, parts)| !parts.is_empty())
        .map(|(keyword, parts)| format!("{keyword} {}", parts.join(", ")))
        .collect();
        (!clauses.is_empty()).then(|| clauses.join(" "))
    }

    pub fn finish(self) -> Expression {
        Expression {
            update: self.update_expression(),
            condition: (!self.conditions.is_empty()).then(|| self.conditions.join(" AND ")),
            names: (!self.names.is_empty()).then_some(self.names),
            values: (!self.values.is_empty()).then_some(self.values),
        }
    }
}

/// Requests that take an [`Expression`]: an UpdateItem, or an `Update` of a transaction.
pub trait WithExpression: Sized {
    fn with(self, expression: Expression) -> Self;
}

impl WithExpression
    for aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder
{
    fn with(self, expression: Expression) -> Self {
        self.set_update_expression(expression.update)
            .set_condition_expression(expression.condition)
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
    }
}

impl WithExpression for aws_sdk_dynamodb::types::builders::UpdateBuilder {
    fn with(self, expression: Expression) -> Self {
        self.set_update_expression(expression.update)
            .set_condition_expression(expression.condition)
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.to_owned())
    }

    fn names(expression: &Expression) -> Vec<(String, String)> {
        let mut names: Vec<_> = expression
            .names
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_update_with_every_clause() {
        let mut expr = Expr::new();
        expr.set("name", s("Ann"))
            .set_if_absent("ingested_at", s("t0"))
            .add("version", AttributeValue::N("1".into()))
            .remove("GSI2PK");
        let expression = expr.finish();
        assert_eq!(
            expression.update.as_deref(),
            Some("SET #n0 = :v0, #n1 = if_not_exists(#n1, :v1) ADD #n2 :v2 REMOVE #n3")
        );
        assert_eq!(expression.condition, None);
        assert_eq!(
            names(&expression),
            [
                ("#n0".into(), "name".into()),
                ("#n1".into(), "ingested_at".into()),
                ("#n2".into(), "version".into()),
                ("#n3".into(), "GSI2PK".into()),
            ]
        );
        let values = expression.values.unwrap();
        assert_eq!(values[":v0"], s("Ann"));
        assert_eq!(values[":v2"], AttributeValue::N("1".into()));
    }

    #[test]
    fn an_attribute_named_twice_has_one_placeholder() {
        let mut expr = Expr::new();
        let stamp = expr.value(s("2025-01-01"));
        expr.set_to("last_event_at", &stamp);
        let guard = expr.absent_or_below("last_event_at", &stamp);
        expr.condition(guard);
        let expression = expr.finish();
        assert_eq!(expression.update.as_deref(), Some("SET #n0 = :v0"));
        assert_eq!(
            expression.condition.as_deref(),
            Some("(attribute_not_exists(#n0) OR #n0 < :v0)")
        );
        assert_eq!(names(&expression).len(), 1);
        assert_eq!(expression.values.unwrap().len(), 1);
    }

    #[test]
    fn conditions_are_joined_with_and() {
        let mut expr = Expr::new();
        let exists = expr.exists("PK");
        let not_revoked = expr.not_exists("revoked_at");
        let owner = expr.equals("org_id", s("acme"));
        expr.condition(exists)
            .condition(not_revoked)
            .condition(owner);
        let expression = expr.finish();
        assert_eq!(expression.update, None);
        assert_eq!(
            expression.condition.as_deref(),
            Some("attribute_exists(#n0) AND attribute_not_exists(#n1) AND #n2 = :v0")
        );
    }

    #[test]
    fn an_empty_expression_has_no_maps() {
        assert_eq!(Expr::new().finish(), Expression::default());
    }

    #[test]
    fn an_expression_feeds_a_transaction_update() {
        let mut expr = Expr::new();
        expr.add("install_count", AttributeValue::N("1".into()));
        let exists = expr.exists("PK");
        expr.condition(exists);
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name("t")
            .key("PK", s("p"))
            .key("SK", s("s"))
            .with(expr.finish())
            .build()
            .unwrap();
        assert_eq!(update.update_expression(), "ADD #n0 :v0");
        assert_eq!(update.condition_expression(), Some("attribute_exists(#n1)"));
    }

    #[test]
    fn a_projection_names_each_attribute_once() {
        let mut expr = Expr::new();
        let projection = expr.projection(["PK", "SK", "entity", "PK"]);
        assert_eq!(projection, "#n0, #n1, #n2, #n0");
    }
}
